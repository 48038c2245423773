"""What comes back after a message was sent, and the suppression list it feeds.

One owner for every outcome, whichever way it arrives (the SMTP bounce listener, a
provider's webhook, a refusal at send time): :func:`record_report` writes the report, marks
the outbox row, and suppresses the address when the outcome says so (a hard bounce, a
complaint, or soft bounces past SOFT_BOUNCE_THRESHOLD within SOFT_BOUNCE_WINDOW_DAYS), in one
transaction. Complaints past COMPLAINT_ALERT_PER_HOUR alert the admins.

The suppression list is keyed by the address's key as accounts know it
(``shared.validation.email_key``), the key every outbox row carries as ``recipient_key``
and the worker compares when it claims a message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.alerts import alert_admins
from shared.jobs import EmailKind
from shared.models import BounceReport, Email, EmailStatus, Suppression, User, still_pending
from shared.outbox import announce
from shared.services.context import ServiceContext
from shared.validation import email_key

# Bytes kept of a report nobody could match or read, for an operator: enough to see what it
# is. Anyone can send such reports (the bounce listener is an open door by nature), so they
# must not become storage for strangers; retention purges them (BOUNCE_REPORTS_RETENTION_DAYS).
MAX_RAW = 8 * 1024
SUPPRESSED = "suppressed"  # how a skipped message's reason starts


class Outcome(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    DELAYED = "delayed"  # a "still trying" notice: recorded, changes nothing
    UNMATCHED = "unmatched"  # no message of ours (or a forged address): changes nothing
    UNPARSED = "unparsed"  # not a format we read: kept whole for an operator


class Cause(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    REJECTED = "rejected"  # refused with a permanent error at send time
    SOFT_BOUNCES = "soft_bounces"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Report:
    """A report as understood: who sent it, what it says, which message it is about."""

    source: str  # smtp, mailgun
    kind: str  # dsn, arf, event, unknown
    outcome: Outcome
    email_id: int | None
    detail: str
    raw: bytes | None = None


async def record_report(ctx: ServiceContext, report: Report) -> Outcome:
    """Record a report and apply it; returns the outcome as recorded (UNMATCHED when it
    names no outbox row that exists)."""
    async with ctx.unit_of_work() as session:
        email = await session.get(Email, report.email_id) if report.email_id else None
        outcome = report.outcome
        if email is None and outcome not in (Outcome.UNPARSED, Outcome.UNMATCHED):
            outcome = Outcome.UNMATCHED
        keep_raw = outcome in (Outcome.UNPARSED, Outcome.UNMATCHED)
        session.add(
            BounceReport(
                source=report.source,
                kind=report.kind,
                outcome=outcome,
                email_id=email.id if email else None,
                address_key=email_key(email.recipient) if email else None,
                detail=report.detail[:4000],
                raw=report.raw[:MAX_RAW] if keep_raw and report.raw else None,
            )
        )
        if email is None or outcome not in (
            Outcome.HARD_BOUNCE,
            Outcome.SOFT_BOUNCE,
            Outcome.COMPLAINT,
        ):
            return outcome
        email.bounce = {"hard_bounce": "hard", "soft_bounce": "soft"}.get(outcome, "complaint")
        email.bounce_detail = report.detail[:2000]
        email.bounced_at = func.now()
        await session.flush()
        if not await _still_the_holders(session, email):
            # The address changed hands since (its next account, or nobody's): a report about
            # mail to its former holder says nothing about the new one.
            return outcome
        if outcome is Outcome.SOFT_BOUNCE:
            if await _soft_bounces(session, ctx, email.recipient) >= (
                ctx.settings.SOFT_BOUNCE_THRESHOLD
            ):
                await suppress(
                    session,
                    email.recipient,
                    Cause.SOFT_BOUNCES,
                    f"{ctx.settings.SOFT_BOUNCE_THRESHOLD} temporary failures: {report.detail}",
                    email.id,
                )
        else:
            cause = Cause.HARD_BOUNCE if outcome is Outcome.HARD_BOUNCE else Cause.COMPLAINT
            await suppress(session, email.recipient, cause, report.detail, email.id)
        if outcome is Outcome.COMPLAINT:
            await _alert_on_complaint_spike(session, ctx)
    return outcome


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A message refused for good at send time (or out of attempts)."""

    email_id: int
    kind: str
    recipient: str
    attempts: int
    detail: str  # what the server said
    address_refused: bool  # refused at RCPT or a 5.1.x / 5.2.1 status: about the address


async def delivery_failed(ctx: ServiceContext, failure: FailedDelivery) -> None:
    """A permanent failure at send time, in one transaction with what it causes: the outbox
    row records it (if it is still the pending row the worker claimed), the address goes on
    the suppression list when the server refused the address itself (not a message policy:
    5.7.x keeps the address), and the admins are told (not about a failed alert to them)."""
    async with ctx.unit_of_work() as session:
        await session.execute(
            update(Email)
            .where(Email.id == failure.email_id, still_pending(Email.status.expression))
            .values(
                status=EmailStatus.FAILED,
                attempts=failure.attempts,
                last_error=failure.detail[:2000],
                claimed_until=None,
            )
        )
        if failure.address_refused:
            await suppress(
                session, failure.recipient, Cause.REJECTED, failure.detail, failure.email_id
            )
        if failure.kind != EmailKind.ADMIN_ALERT:
            await alert_admins(
                session,
                ctx.redis,
                ctx.settings,
                key=f"delivery:{failure.kind}:{failure.detail[:40]}",
                summary=f"Email {failure.email_id} ({failure.kind}) failed permanently",
                details=(
                    f"To: {failure.recipient}\nAttempts: {failure.attempts}\n{failure.detail}"
                ),
            )


async def _still_the_holders(session: AsyncSession, email: Email) -> bool:
    """Whether a report about ``email`` may suppress its address: not when the address has
    changed hands since the message was sent (a former holder must not be able to stop mail
    to the next one with a report about old mail), nor for the goodbye to a deleted account
    (the address is nobody's now; its next holder starts afresh)."""
    if email.kind == EmailKind.ACCOUNT_DELETED:
        return False
    holder = (
        await session.execute(
            select(User.id, User.created_at, User.confirmed_at).where(
                User.email_key == email_key(email.recipient)
            )
        )
    ).first()
    if email.user_id is not None:  # mail about an account: that account must hold it still
        return holder is not None and holder.id == email.user_id
    if holder is None:  # an operator's test, an alert: the address itself bounced
        return True
    since = max(holder.created_at, holder.confirmed_at or holder.created_at)
    return bool(email.created_at >= since)


async def _soft_bounces(session: AsyncSession, ctx: ServiceContext, recipient: str) -> int:
    window = timedelta(days=ctx.settings.SOFT_BOUNCE_WINDOW_DAYS)
    count = await session.scalar(
        select(func.count())
        .select_from(BounceReport)
        .where(
            BounceReport.address_key == email_key(recipient),
            BounceReport.outcome == Outcome.SOFT_BOUNCE,
            BounceReport.received_at > func.now() - window,
        )
    )
    return count or 0


async def _alert_on_complaint_spike(session: AsyncSession, ctx: ServiceContext) -> None:
    complaints = await session.scalar(
        select(func.count())
        .select_from(BounceReport)
        .where(
            BounceReport.outcome == Outcome.COMPLAINT,
            BounceReport.received_at > func.now() - timedelta(hours=1),
        )
    )
    if (complaints or 0) >= ctx.settings.COMPLAINT_ALERT_PER_HOUR:
        await alert_admins(
            session,
            ctx.redis,
            ctx.settings,
            key="complaint-spike",
            summary=f"{complaints} spam complaints in the last hour",
            details=(
                "Recipients marked our mail as spam. Each address is suppressed; a spike "
                "usually means mail someone did not ask for (a sign-up bot using other "
                "people's addresses?). `python -m worker suppressions list` shows them."
            ),
        )


async def suppress(
    session: AsyncSession,
    address: str,
    cause: Cause,
    reason: str,
    email_id: int | None = None,
) -> None:
    """Put an address on the list (again), in the caller's transaction."""
    values = {"address": address, "cause": cause.value, "reason": reason[:2000],
              "email_id": email_id}  # fmt: skip
    await session.execute(
        insert(Suppression)
        .values(address_key=email_key(address), **values)
        .on_conflict_do_update(
            index_elements=[Suppression.address_key],
            set_={**values, "updated_at": func.now(), "lifted_at": None},
        )
    )


async def suppress_alone(
    ctx: ServiceContext, address: str, cause: Cause, reason: str, email_id: int | None
) -> None:
    async with ctx.unit_of_work() as session:
        await suppress(session, address, cause, reason, email_id)


async def active_suppression(session: AsyncSession, address: str) -> Suppression | None:
    found: Suppression | None = await session.scalar(
        select(Suppression).where(
            Suppression.address_key == email_key(address), Suppression.lifted_at.is_(None)
        )
    )
    return found


@dataclass(frozen=True, slots=True)
class DeliveryProblem:
    """What the account page says: "we could not deliver mail to this address on <since>:
    <reason>", and whether its owner may still ask for one more try."""

    since: datetime
    reason: str
    can_retry: bool


async def delivery_problem(ctx: ServiceContext, user: User) -> DeliveryProblem | None:
    async with ctx.reading() as session:
        found = await active_suppression(session, user.email)
    if found is None:
        return None
    return DeliveryProblem(
        since=found.updated_at, reason=found.reason, can_retry=found.owner_lifts == 0
    )


async def retry_for_owner(ctx: ServiceContext, user_id: int) -> bool:
    """The owner's one lift: the address is tried again, and the latest message that was
    held back (skipped as suppressed, or failed) goes out again. False when there is nothing
    to lift or the owner has used the lift (then: change the address)."""
    async with ctx.unit_of_work() as session:
        user = await session.get(User, user_id, with_for_update=True)
        if user is None:
            return False
        lifted = await session.execute(
            update(Suppression)
            .where(
                Suppression.address_key == email_key(user.email),
                Suppression.lifted_at.is_(None),
                Suppression.owner_lifts == 0,
            )
            .values(lifted_at=func.now(), owner_lifts=Suppression.owner_lifts + 1)
        )
        if not lifted.rowcount:  # type: ignore[attr-defined]
            return False
        latest = await session.scalar(
            select(Email.id)
            .where(
                Email.user_id == user_id,
                Email.recipient_key == user.email_key,
                Email.status.in_([EmailStatus.SKIPPED, EmailStatus.FAILED]),
                Email.created_at > func.now() - timedelta(days=1),
            )
            .order_by(Email.id.desc())
            .limit(1)
        )
        if latest is not None:
            await session.execute(
                update(Email)
                .where(Email.id == latest)
                .values(status=EmailStatus.PENDING, attempts=0, next_attempt_at=func.now())
            )
            announce(session, [latest], priority=True)
    return True


async def list_suppressions(ctx: ServiceContext, limit: int = 500) -> list[Suppression]:
    async with ctx.reading() as session:
        return list(
            await session.scalars(
                select(Suppression)
                .where(Suppression.lifted_at.is_(None))
                .order_by(Suppression.updated_at.desc())
                .limit(limit)
            )
        )


async def remove_suppression(ctx: ServiceContext, address: str) -> bool:
    """An operator takes an address off the list (the row goes; the owner's lift resets)."""
    async with ctx.unit_of_work() as session:
        result = await session.execute(
            delete(Suppression).where(Suppression.address_key == email_key(address))
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def counts(session: AsyncSession) -> dict[str, int]:
    """Active suppressions by cause (for the metrics)."""
    rows = await session.execute(
        select(Suppression.cause, func.count())
        .where(Suppression.lifted_at.is_(None))
        .group_by(Suppression.cause)
    )
    return {cause: count for cause, count in rows.all()}


async def list_reports(
    ctx: ServiceContext, *, everything: bool = False, limit: int = 100
) -> list[BounceReport]:
    """Recent reports; by default only those kept for an operator (unparsed, unmatched)."""
    query = select(BounceReport).order_by(BounceReport.id.desc()).limit(limit)
    if not everything:
        query = query.where(BounceReport.outcome.in_([Outcome.UNPARSED, Outcome.UNMATCHED]))
    async with ctx.reading() as session:
        return list(await session.scalars(query))


async def report(ctx: ServiceContext, report_id: int) -> BounceReport | None:
    async with ctx.reading() as session:
        return await session.get(BounceReport, report_id)


async def recent_report_counts(session: AsyncSession) -> dict[str, int]:
    """Reports received in the last hour, by outcome (for the metrics)."""
    rows = await session.execute(
        select(BounceReport.outcome, func.count())
        .where(BounceReport.received_at > func.now() - timedelta(hours=1))
        .group_by(BounceReport.outcome)
    )
    return {outcome: count for outcome, count in rows.all()}
