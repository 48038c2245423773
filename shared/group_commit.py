"""Deferred writes that arrive together commit together.

A web process defers some writes past the answer (the reset link, the new account, the
failed sign-in's event: see :mod:`web.after_response`). Each was a unit of work of its own:
a session, a pool checkout, BEGIN, two or three statements, COMMIT, and a Redis call per
email to announce. Under load those fixed costs were most of the writing's CPU (the
figures, side by side, are in bench/RESULTS.md). :class:`GroupCommit` runs the works that
arrive while a batch is committing as the next batch, in one transaction, and announces its
emails in one call; an isolated work still commits at once, on its own.

What each work may assume is what it had alone: it runs in its caller's context (the
security events' origin is a context variable), on a session whose transaction it shares
with the others in the batch. What it must not do is anything outside that transaction, for
a batch that fails is rolled back and each of its works is run again alone, so that one
work's error (or a deadlock between two processes' batches) costs the others nothing.

Sharing the transaction still left each work's own statements, one round trip each, and under
load every round trip of this background writing waits a whole turn of the event loop behind
the requests. A write that floods can come as :class:`Together`: the neighbouring items of
one ``write`` in a batch go to it as one list, which it writes in a few set-based statements
(``UPDATE ... WHERE key = ANY(...)``, one multi-row INSERT) whatever their number.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from shared.batching import Coalescer

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[AsyncSession], Coroutine[Any, Any, Any]]
UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]

# Row locks are held until the batch commits: a bigger batch saves less per work and makes
# whoever waits on one of its rows (a sign-in, a reset link being used) wait longer.
MAX_BATCH = 32


@dataclass(frozen=True, slots=True)
class Together(Generic[T]):
    """``item``, to be written by ``write(session, items)`` with the neighbouring items of
    the same ``write`` in its batch, in key order. ``write`` serves many callers, so it runs
    in none's context: what it needs of the request (its origin, say) travels in the item."""

    write: Callable[[AsyncSession, list[T]], Coroutine[Any, Any, None]]
    item: T


@dataclass(frozen=True, slots=True)
class _Item:
    work: Work | Together[Any]
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

    def __init__(
        self, unit_of_work: UnitOfWork, *, max_batch: int = MAX_BATCH, linger: float = 0.0
    ) -> None:
        self._unit_of_work = unit_of_work
        self._coalescer: Coalescer[_Item, BaseException | None] = Coalescer(
            self._commit, max_batch=max_batch, linger=linger
        )

    async def __call__(self, work: Work | Together[Any], *, lock_key: str = "") -> None:
        error = await self._coalescer(_Item(work, lock_key, contextvars.copy_context()))
        if error is not None:
            raise error

    async def _commit(self, batch: list[_Item]) -> Sequence[BaseException | None]:
        try:
            async with self._unit_of_work() as session:
                for group in _groups(sorted(batch, key=lambda item: item.lock_key)):
                    await _run(group, session)
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
                await _run([item], session)
        except Exception as error:
            return error
        return None


def _groups(items: list[_Item]) -> list[list[_Item]]:
    """Runs of neighbouring items of one :class:`Together` write; each other work alone.
    The order (and so the order rows are locked in) stays that of ``items``."""

    def write_of(item: _Item) -> object:
        return item.work.write if isinstance(item.work, Together) else item

    return [list(group) for _, group in groupby(items, key=write_of)]


async def _run(group: list[_Item], session: AsyncSession) -> None:
    """Run a work in its caller's context, or a :class:`Together` write for its items in an
    empty one (each as a task of its own: a coroutine cannot switch contexts in the middle
    of another's; an empty context, so that no caller's request shows in the others')."""
    work = group[0].work
    if isinstance(work, Together):
        items = [item.work.item for item in group]  # type: ignore[union-attr]
        await asyncio.create_task(work.write(session, items), context=contextvars.Context())
    else:
        await asyncio.create_task(work(session), context=group[0].context)
