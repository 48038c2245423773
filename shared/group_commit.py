"""Deferred writes that arrive together commit together.

A web process defers some writes past the answer (the reset link, the new account, the
failed sign-in's event: see :mod:`web.after_response`). Each was a unit of work of its own:
a session, a pool checkout, BEGIN, two or three statements, COMMIT, and a Redis call per
email to announce. Under load those fixed costs were most of the writing's CPU: sharing
them saved 28 % of the web process's CPU per reset and 40 % of PostgreSQL's (measured side
by side, bench/RESULTS.md). :class:`GroupCommit` runs the works that arrive while a batch
is committing as the next batch, in one transaction, and announces its emails in one call;
an isolated work still commits at once, on its own.

What each work may assume is what it had alone: it runs in its caller's context (the
security events' origin is a context variable), on a session whose transaction it shares
with the others in the batch. What it must not do is anything outside that transaction, for
a batch that fails is rolled back and each of its works is run again alone, so that one
work's error (or a deadlock between two processes' batches) costs the others nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.batching import Coalescer

log = logging.getLogger(__name__)

Work = Callable[[AsyncSession], Coroutine[Any, Any, Any]]
UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]

# Row locks are held until the batch commits: a bigger batch saves less per work and makes
# whoever waits on one of its rows (a sign-in, a reset link being used) wait longer.
MAX_BATCH = 32


@dataclass(frozen=True, slots=True)
class _Item:
    work: Work
    lock_key: str
    context: contextvars.Context


class GroupCommit:
    """``await group_commit(work, lock_key=...)`` runs ``work(session)`` in a transaction
    shared with the works that arrived with it, and returns once that has committed (its
    emails announced); it raises what ``work`` raised, if it failed when run alone too.

    ``lock_key`` orders the works of a batch: a work that locks a row (an account, by its
    address's key) passes that row's key, so that two processes' batches lock rows in the
    same order and do not deadlock each other.
    """

    def __init__(self, unit_of_work: UnitOfWork, *, max_batch: int = MAX_BATCH) -> None:
        self._unit_of_work = unit_of_work
        self._coalescer: Coalescer[_Item, BaseException | None] = Coalescer(
            self._commit, max_batch=max_batch
        )

    async def __call__(self, work: Work, *, lock_key: str = "") -> None:
        error = await self._coalescer(_Item(work, lock_key, contextvars.copy_context()))
        if error is not None:
            raise error

    async def _commit(self, batch: list[_Item]) -> Sequence[BaseException | None]:
        try:
            async with self._unit_of_work() as session:
                for item in sorted(batch, key=lambda item: item.lock_key):
                    await _run(item, session)
        except Exception as error:
            if len(batch) == 1:
                return [error]
            log.warning(
                "a batch of %d deferred writes failed (%s); each is run again alone",
                len(batch),
                type(error).__name__,
            )
            return [await self._alone(item) for item in batch]
        return [None] * len(batch)

    async def _alone(self, item: _Item) -> BaseException | None:
        try:
            async with self._unit_of_work() as session:
                await _run(item, session)
        except Exception as error:
            return error
        return None


async def _run(item: _Item, session: AsyncSession) -> None:
    """Run a work in its caller's context (as a task of its own: a coroutine cannot switch
    contexts in the middle of another's)."""
    await asyncio.create_task(item.work(session), context=item.context)
