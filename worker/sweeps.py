"""The sweep the HTTP outboxes share (webhook deliveries, back-channel logouts): re-enqueue
pending rows overdue by OUTBOX_SWEEP_AFTER (a lost job, Redis away at commit), moving their
due time to now so that the next sweep does not take them again. The emails' sweep is their
own (worker/mail/delivery.py): they travel through the due set, not as arq jobs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import ColumnElement, Table, func, or_, select, update

from shared.models import EmailStatus
from worker.context import WorkerState

log = logging.getLogger(__name__)

Enqueue = Callable[[int], Awaitable[str | None]]


def unclaimed(table: Table) -> ColumnElement[bool]:
    """No live run holds the row (its lease, ``claimed_until``, is unset or past)."""
    return or_(table.c.claimed_until.is_(None), table.c.claimed_until < func.now())


async def sweep_overdue(
    st: WorkerState, table: Table, enqueue: Enqueue, what: str, *, limit: int = 1000
) -> int:
    """Re-enqueue up to ``limit`` overdue pending rows of ``table``; how many were enqueued
    (a row whose job is still queued is not enqueued twice)."""
    cutoff = func.now() - timedelta(seconds=st.settings.OUTBOX_SWEEP_AFTER)
    due = (
        select(table.c.id)
        .where(
            table.c.status == EmailStatus.PENDING,
            table.c.next_attempt_at <= cutoff,
            unclaimed(table),
        )
        .order_by(table.c.next_attempt_at)
        .limit(limit)
        .scalar_subquery()
    )
    async with st.sessionmaker() as session, session.begin():
        ids = list(
            await session.scalars(
                update(table)
                .where(table.c.id.in_(due))
                .values(next_attempt_at=func.now())
                .returning(table.c.id)
            )
        )
    enqueued = sum([1 for row_id in ids if await enqueue(row_id)])
    if ids:
        log.info("sweeper: %s overdue %s, %s enqueued", len(ids), what, enqueued)
    return enqueued
