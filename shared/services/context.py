"""What the use cases need from their process, and the unit of work they run in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.db import SessionMaker, create_engine, create_sessionmaker
from shared.group_commit import GroupCommit, Together, Work
from shared.jobs import create_queue
from shared.outbox import transaction
from shared.ratelimit import Limits
from shared.settings import Settings
from shared.tokens import Tokens

if TYPE_CHECKING:
    from arq.connections import ArqRedis

log = logging.getLogger(__name__)
PING_TIMEOUT = 3.0  # seconds a backing service has to answer a start-up check

Defer = Callable[..., None]
"""Run ``func(*args, **kwargs)`` after the answer has gone out (Quart's
``add_background_task``)."""


class BackgroundTasks:
    """A :data:`Defer` for processes without a web server (CLIs, service tests): tasks on
    the running loop, kept referenced until done; :meth:`drain` waits for them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __call__(self, func: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> None:
        task = asyncio.ensure_future(func(*args, **kwargs))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """Built once per process: settings, the database, Redis (the job queue and the rate
    limits) and the token signer."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: SessionMaker
    redis: ArqRedis
    tokens: Tokens
    limits: Limits
    defer: Defer = field(default_factory=BackgroundTasks)
    # Sessions for reads (``reading``): on the same pool, in autocommit, so a read is its one
    # round trip, without a BEGIN before it and a ROLLBACK after (under READ COMMITTED each
    # statement sees its own snapshot either way). None: reads use ``sessionmaker``.
    reader: SessionMaker | None = None
    # What a process may keep between requests for a few seconds (the identity provider's
    # unsealed signing keys, shared.services.identity.signed); keyed by its owner module.
    memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _group_commit: GroupCommit = field(init=False, repr=False)

    def __post_init__(self) -> None:
        linger = self.settings.DEFERRED_WRITE_LINGER
        object.__setattr__(self, "_group_commit", GroupCommit(self.unit_of_work, linger=linger))

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        application_name: str,
        pool_size: int | None = None,
        defer: Defer | None = None,
    ) -> ServiceContext:
        """Connect lazily: a process starts, and keeps serving, while Redis or PostgreSQL is
        away; emails then wait in the outbox for the sweeper. ``pool_size``: the process's
        DATABASE_CONNECTIONS unless given (a command line needs one or two)."""
        engine = create_engine(
            settings.DATABASE_URL,
            application_name=application_name,
            pool_size=pool_size or settings.DATABASE_CONNECTIONS,
            pool_timeout=settings.DATABASE_POOL_TIMEOUT,
        )
        redis = create_queue(settings.REDIS_URL)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            reader=create_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT")),
            redis=redis,
            tokens=Tokens(settings.SECRET_KEY.get_secret_value()),
            limits=Limits(redis, key_prefix=settings.REDIS_KEY_PREFIX),
            defer=defer or BackgroundTasks(),
        )

    async def close(self) -> None:
        if isinstance(self.defer, BackgroundTasks):
            await self.defer.drain()
        for kept in self.memo.values():  # what the process kept that holds connections
            if hasattr(kept, "aclose"):
                await kept.aclose()
        await self.redis.aclose()
        await self.engine.dispose()

    async def unreachable(self) -> dict[str, BaseException]:
        """The backing services that do not answer within PING_TIMEOUT, and why: worth one
        line each at start-up (a process starts anyway and keeps trying)."""
        checks: dict[str, Callable[[], Awaitable[object]]] = {
            "PostgreSQL": self.ping_database,
            "Redis": self.redis.ping,
        }
        failed: dict[str, BaseException] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), PING_TIMEOUT)
            except Exception as error:  # any failure is worth the one line
                failed[name] = error
        return failed

    async def ping_database(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    def unit_of_work(self) -> AbstractAsyncContextManager[AsyncSession]:
        """``async with ctx.unit_of_work() as session``: one transaction, committed when the
        block ends without an error; the outbox rows it added are enqueued after the commit,
        never before (see :mod:`shared.outbox`)."""
        return transaction(self.sessionmaker, self.redis, queue_name=self.settings.QUEUE_NAME)

    async def commit_together(self, work: Work | Together[Any], *, lock_key: str = "") -> None:
        """For deferred writes: ``work(session)`` in a unit of work shared with the deferred
        writes that arrive with it (see :mod:`shared.group_commit`: ``work`` may run twice,
        the first time rolled back, so it only touches the session; ``lock_key`` is the key
        of the account row it locks, if any). A :class:`Together` is written with its
        neighbours of the same write, in one call."""
        await self._group_commit(work, lock_key=lock_key)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (and at most a single-statement write, atomic alone: each
        statement takes effect as it runs)."""
        async with (self.reader or self.sessionmaker)() as session:
            yield session

    @property
    def secret(self) -> str:
        return self.settings.SECRET_KEY.get_secret_value()
