"""What operators ask of the outbox: what is stuck or failed, put failed emails back, and the
counts the metrics report. Used by ``python -m worker outbox`` / ``retry`` and the worker's
metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.alerts import alert_admins
from shared.jobs import EmailKind, TestEmail
from shared.models import (
    BounceReport,
    Email,
    EmailStatus,
    SecurityEvent,
    SignInSession,
    Suppression,
    User,
    UsernameHold,
    WebhookDelivery,
)
from shared.outbox import add_email, announce
from shared.services.context import ServiceContext
from shared.settings import Settings

PURGE_BATCH = 1000  # rows per statement: short transactions, no long locks


async def list_emails(
    ctx: ServiceContext,
    *,
    failed_only: bool = False,
    since: datetime | None = None,
    limit: int = 200,
) -> list[Email]:
    statuses = [EmailStatus.FAILED] if failed_only else [EmailStatus.PENDING, EmailStatus.FAILED]
    query = select(Email).where(Email.status.in_(statuses)).order_by(Email.id).limit(limit)
    if since is not None:
        query = query.where(Email.created_at >= since)
    async with ctx.reading() as session:
        return list(await session.scalars(query))


async def requeue_failed(
    ctx: ServiceContext, *, ids: list[int] | None = None, all_failed: bool = False
) -> list[int]:
    """Failed emails back to pending with a fresh attempt budget, enqueued after the
    commit; returns their ids."""
    return await requeue_failed_rows(ctx, Email, announce, ids=ids, all_failed=all_failed)


async def requeue_failed_rows(
    ctx: ServiceContext,
    model: type[Email] | type[WebhookDelivery],
    announce_rows: Callable[[AsyncSession, list[int]], None],
    *,
    ids: list[int] | None,
    all_failed: bool,
) -> list[int]:
    """Failed rows of an outbox (emails, webhook deliveries) back to pending with a fresh
    attempt budget, announced after the commit; returns their ids."""
    if not ids and not all_failed:
        return []
    query = (
        update(model)
        .where(model.status == EmailStatus.FAILED)
        .values(status=EmailStatus.PENDING, attempts=0, next_attempt_at=func.now())
        .returning(model.id)
    )
    if not all_failed:
        query = query.where(model.id.in_(ids or []))
    async with ctx.unit_of_work() as session:
        requeued = sorted((await session.scalars(query)).all())
        announce_rows(session, requeued)
    return requeued


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    failed: int
    oldest_pending_age: float  # seconds; 0 when nothing is pending


FAILED_WINDOW = 86_400  # seconds: the failed-email gauge counts the last day's


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
    # Failures of the last day, not of all time: counting every failed row kept for the
    # operator grew with history (50,000 rows made the gauges 2.3x slower, bench scenario 8).
    failed = await session.scalar(
        select(func.count())
        .select_from(Email)
        .where(
            Email.status == EmailStatus.FAILED,
            Email.created_at > func.now() - timedelta(seconds=FAILED_WINDOW),
        )
    )
    return OutboxStats(pending=pending, failed=failed or 0, oldest_pending_age=float(age or 0))


async def alert_admins_of(ctx: ServiceContext, *, key: str, summary: str, details: str) -> None:
    """Email the ADMINS about an unexpected error (at most one per ``key`` per alert window),
    in a unit of work of its own: the failed request's own work is gone."""
    async with ctx.unit_of_work() as session:
        await alert_admins(
            session, ctx.redis, ctx.settings, key=key, summary=summary, details=details
        )


async def send_test_email(ctx: ServiceContext, recipient: str) -> int:
    """Queue a test message (to check the mail set-up end to end); its outbox id."""
    async with ctx.unit_of_work() as session:
        return await add_email(session, EmailKind.TEST, recipient, TestEmail())


async def purge_expired(session: AsyncSession, settings: Settings) -> dict[str, int]:
    """Delete, in batches, what the service no longer needs or may keep: delivered and
    skipped outbox rows after OUTBOX_RETENTION_DAYS (they hold addresses and names), failed
    ones after OUTBOX_FAILED_RETENTION_DAYS (webhook deliveries alike), accounts never
    confirmed within CONFIRM_TOKEN_MAX_AGE (their username is free again, as an ended
    hold's is), bounce reports and suppressions past their retention, expired or revoked
    sign-ins, and ended username holds. Returns how many of each."""
    day = timedelta(days=1)
    events_kept = settings.SECURITY_EVENTS_RETENTION_DAYS * day
    targets = {
        "outbox rows": (
            Email,
            Email.id,
            (Email.status.in_([EmailStatus.SENT, EmailStatus.SKIPPED]),
             Email.created_at < func.now() - settings.OUTBOX_RETENTION_DAYS * day),
        ),
        "failed outbox rows": (
            Email,
            Email.id,
            (Email.status == EmailStatus.FAILED,
             Email.created_at < func.now() - settings.OUTBOX_FAILED_RETENTION_DAYS * day),
        ),
        "webhook deliveries": (
            WebhookDelivery,
            WebhookDelivery.id,
            (WebhookDelivery.status == EmailStatus.SENT,
             WebhookDelivery.created_at < func.now() - settings.OUTBOX_RETENTION_DAYS * day),
        ),
        "failed webhook deliveries": (
            WebhookDelivery,
            WebhookDelivery.id,
            (WebhookDelivery.status == EmailStatus.FAILED,
             WebhookDelivery.created_at < func.now() - settings.OUTBOX_FAILED_RETENTION_DAYS * day),
        ),
        "unconfirmed accounts": (
            User,
            User.id,
            (User.confirmed_at.is_(None),
             User.created_at < func.now() - timedelta(seconds=settings.CONFIRM_TOKEN_MAX_AGE)),
        ),
        "security events": (
            SecurityEvent,
            SecurityEvent.id,
            (SecurityEvent.created_at < func.now() - events_kept,),
        ),
        "bounce reports": (
            BounceReport,
            BounceReport.id,
            (BounceReport.received_at < func.now() - settings.BOUNCE_REPORTS_RETENTION_DAYS * day,),
        ),
        "suppressions": (
            Suppression,
            Suppression.address_key,
            (Suppression.updated_at < func.now() - settings.SUPPRESSIONS_RETENTION_DAYS * day,),
        ),
        "ended sign-ins": (
            SignInSession,
            SignInSession.id,
            (or_(SignInSession.expires_at < func.now(), SignInSession.revoked_at.is_not(None)),),
        ),
        "username holds": (
            UsernameHold,
            UsernameHold.username_key,
            (UsernameHold.expires_at < func.now(),),
        ),
    }  # fmt: skip
    purged: dict[str, int] = {}
    for name, (model, key, conditions) in targets.items():
        purged[name] = 0
        while True:
            batch = select(key).where(*conditions).limit(PURGE_BATCH).scalar_subquery()
            async with session.begin():
                result = await session.execute(delete(model).where(key.in_(batch)))
            count = int(result.rowcount or 0)  # type: ignore[attr-defined]
            purged[name] += count
            if count < PURGE_BATCH:
                break
    return purged


@dataclass(frozen=True, slots=True)
class ConnectionBudget:
    """What the PostgreSQL server allows, and what is in use now."""

    max_connections: int
    reserved: int  # for superusers (and, from PostgreSQL 16, reserved_connections)
    in_use: int

    def room(self) -> int:
        return self.max_connections - self.reserved - self.in_use


async def connection_budget(ctx: ServiceContext) -> ConnectionBudget:
    async with ctx.reading() as session:
        row = (
            await session.execute(
                text(
                    "SELECT current_setting('max_connections')::int,"
                    " current_setting('superuser_reserved_connections')::int"
                    " + coalesce(current_setting('reserved_connections', true), '0')::int,"
                    " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
                )
            )
        ).one()
    return ConnectionBudget(int(row[0]), int(row[1]), int(row[2]))


async def check_connection_budget(
    ctx: ServiceContext, processes: int, logger: logging.Logger
) -> None:
    """At start-up: say so when ``processes`` x DATABASE_CONNECTIONS more connections than
    the server has room for could be opened (then requests would wait and answer 503 under
    load). Nothing when the server cannot be asked (the start-up check says why)."""
    try:
        budget = await connection_budget(ctx)
    except Exception:  # unreachable: already said once; the budget is unknowable now
        return
    wanted = processes * ctx.settings.DATABASE_CONNECTIONS
    if wanted > budget.room():
        logger.warning(
            "these %d process(es) may open %d PostgreSQL connections (DATABASE_CONNECTIONS=%d"
            " each) but the server has room for %d more (max_connections %d, %d reserved, %d"
            " in use): lower DATABASE_CONNECTIONS or WEB_WORKERS, or raise max_connections",
            processes,
            wanted,
            ctx.settings.DATABASE_CONNECTIONS,
            max(0, budget.room()),
            budget.max_connections,
            budget.reserved,
            budget.in_use,
        )
