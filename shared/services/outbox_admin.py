"""What operators ask of the outbox: list what is stuck or failed, and put failed emails back.

Used by ``python -m worker outbox`` / ``retry`` and by ``/metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Email, EmailStatus


async def list_emails(
    session: AsyncSession,
    *,
    failed_only: bool = False,
    since: datetime | None = None,
    limit: int = 200,
) -> list[Email]:
    statuses = [EmailStatus.FAILED] if failed_only else [EmailStatus.PENDING, EmailStatus.FAILED]
    query = select(Email).where(Email.status.in_(statuses)).order_by(Email.id).limit(limit)
    if since is not None:
        query = query.where(Email.created_at >= since)
    return list(await session.scalars(query))


async def requeue_failed(
    session: AsyncSession, *, ids: list[int] | None = None, all_failed: bool = False
) -> list[int]:
    """Failed rows back to pending with a fresh attempt budget; returns their ids."""
    if not ids and not all_failed:
        return []
    query = (
        update(Email)
        .where(Email.status == EmailStatus.FAILED)
        .values(status=EmailStatus.PENDING, attempts=0, next_attempt_at=func.now())
        .returning(Email.id)
    )
    if not all_failed:
        query = query.where(Email.id.in_(ids or []))
    return sorted((await session.scalars(query)).all())


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    failed: int
    oldest_pending_age: float  # seconds; 0 when nothing is pending


async def outbox_stats(session: AsyncSession) -> OutboxStats:
    """Counts that stay cheap as the table grows: both use partial indexes, sent rows are
    never counted."""
    pending, age = (
        await session.execute(
            select(
                func.count(),
                func.extract("epoch", func.now() - func.min(Email.created_at)),
            ).where(Email.status == EmailStatus.PENDING)
        )
    ).one()
    failed = await session.scalar(
        select(func.count()).select_from(Email).where(Email.status == EmailStatus.FAILED)
    )
    return OutboxStats(pending=pending, failed=failed or 0, oldest_pending_age=float(age or 0))
