"""Job functions: thin steps around the outbox row.

``send_email`` claims the row for a while (a lease), renders, delivers and records the outcome.
The database row, not Redis, is the source of truth: a job may run twice (a sweeper
re-enqueue, a killed worker), and a row that is no longer pending, or that a live run has
claimed, is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from arq import Retry
from jinja2 import TemplateError
from pydantic import ValidationError
from sqlalchemy import func, select, update

from shared.alerts import alert_admins
from shared.jobs import EmailKind, enqueue_send_email, heartbeat_key, parse_context
from shared.models import Email, EmailStatus
from shared.outbox import transaction
from worker.context import WorkerState, state
from worker.emails import OutboxEmail, Skip, prepare
from worker.mailer import DeliveryError, Envelope
from worker.mime import compose
from worker.render import message_id_for
from worker.store import EMAILS, UNCLAIMED

log = logging.getLogger(__name__)


SHORT_WAIT = 1.0  # seconds: wait for the budget in the job; longer waits go back to the queue


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: str
    detail: str
    retry_in: float | None = None
    held: str | None = None  # why a message was held back without an attempt


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about ``base`` after the first failure, doubling each
    time up to ``cap``; the jitter (50-100 %) keeps a burst of failures from retrying in step."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


async def send_email(ctx: dict[str, Any], email_id: int) -> str:
    """Deliver outbox row ``email_id``; returns a short description of what happened.

    Claim the row (a lease, one batched UPDATE), deliver without holding a transaction or a
    connection, then record the outcome. "Sent" is recorded in a batch with other jobs';
    anything else in its own transaction, with the admin alert it may cause.
    """
    st = state(ctx)
    email = await st.store.claim(email_id)
    if email is None:
        return "not pending, or claimed by another run"
    # From here on, whatever goes wrong (a crash, a timeout, the database) the claim simply
    # expires, after which the row's next job run or the sweeper delivers it.
    outcome = await _deliver(st, email)
    if outcome.status == EmailStatus.SENT:
        await st.store.mark_sent(email.id)
    else:
        await _record(ctx, st, email, outcome)
    # Recorded: the attempt is on record even if Redis loses the retry below.
    if outcome.held is not None:
        log.info("email %s held back (%s) for %.1fs", email_id, outcome.held, outcome.retry_in)
        raise Retry(defer=outcome.retry_in)
    if outcome.retry_in is not None:
        log.info(
            "email %s (%s) attempt %s failed temporarily: %s; retry in %.0fs",
            email_id,
            email.kind,
            email.attempts,
            outcome.detail,
            outcome.retry_in,
        )
        raise Retry(defer=outcome.retry_in)
    log_outcome = log.warning if outcome.status == EmailStatus.FAILED else log.info
    log_outcome("email %s (%s) %s: %s", email_id, email.kind, outcome.status, outcome.detail)
    return f"{outcome.status}: {outcome.detail}"


async def _record(
    ctx: dict[str, Any], st: WorkerState, email: OutboxEmail, outcome: _Outcome
) -> None:
    """Write an outcome other than "sent" and release the claim, in one unit of work that
    enqueues, after commit, the admin alert a permanent failure causes."""
    values: dict[str, Any] = {
        "status": outcome.status,
        "attempts": email.attempts,
        "claimed_until": None,
    }
    if outcome.held is None:
        values["last_error"] = outcome.detail[:2000]
    if outcome.retry_in is not None:
        values["next_attempt_at"] = func.now() + timedelta(seconds=outcome.retry_in)
    async with transaction(
        st.sessionmaker, ctx.get("redis"), queue_name=st.settings.QUEUE_NAME
    ) as session:
        await session.execute(
            update(EMAILS)
            .where(EMAILS.c.id == email.id, EMAILS.c.status == EmailStatus.PENDING)
            .values(**values)
        )
        if outcome.status == EmailStatus.FAILED and email.kind != EmailKind.ADMIN_ALERT:
            await alert_admins(
                session,
                ctx.get("redis"),
                st.settings,
                key=f"delivery:{email.kind}:{outcome.detail[:40]}",
                summary=f"Email {email.id} ({email.kind}) failed permanently",
                details=f"To: {email.recipient}\nAttempts: {email.attempts}\n{outcome.detail}",
            )


async def _deliver(st: WorkerState, email: OutboxEmail) -> _Outcome:
    settings = st.settings
    try:
        context = parse_context(email.kind, email.context)
        variables = await prepare(
            st.store.user, email, context, settings=settings, tokens=st.tokens
        )
        if isinstance(variables, Skip):
            return _Outcome(EmailStatus.SKIPPED, variables.reason)
        rendered = st.renderer.render(email.kind, variables)
        message = compose(
            rendered,
            sender=settings.MAIL_DEFAULT_SENDER,
            recipient=email.recipient,
            message_id=message_id_for(email.id, email.created_at, settings.MAIL_DEFAULT_SENDER),
            date=datetime.now(UTC),
        )
    except (ValidationError, ValueError, TemplateError, LookupError) as error:
        # Retrying cannot fix a bad payload or template: fail now, with the reason.
        reason = " ".join(str(error).split())
        return _Outcome(EmailStatus.FAILED, f"cannot render: {type(error).__name__}: {reason}")

    # Budget and breaker first: a message held back here keeps its attempts.
    wait = st.breaker.acquire()
    if not wait:
        wait = st.budget.acquire(email.recipient)
        if wait > SHORT_WAIT:
            st.budget.cancel(email.recipient)  # the slot goes to a message that can wait
            st.breaker.release()  # a half-open trial that will not happen now
    if wait > SHORT_WAIT:
        reason = "SMTP server failing; sending paused" if st.breaker.is_open else "outbound budget"
        return _Outcome(EmailStatus.PENDING, email.last_error or "", retry_in=wait, held=reason)
    if wait:
        await asyncio.sleep(wait)

    email.attempts += 1
    try:
        reply = await st.mailer.send(
            message, envelope=Envelope(st.envelope_sender, email.recipient)
        )
    except DeliveryError as error:
        if not error.temporary:
            st.breaker.success()  # the server answered; it is the message it refused
            return _Outcome(EmailStatus.FAILED, error.reply)
        st.breaker.failure()
        if email.attempts >= settings.MAIL_MAX_ATTEMPTS:
            return _Outcome(
                EmailStatus.FAILED, f"gave up after {email.attempts} attempts: {error.reply}"
            )
        delay = backoff_delay(
            email.attempts,
            base=settings.MAIL_RETRY_BASE_DELAY,
            cap=settings.MAIL_RETRY_MAX_DELAY,
        )
        return _Outcome(EmailStatus.PENDING, error.reply, retry_in=delay)
    st.breaker.success()
    return _Outcome(EmailStatus.SENT, reply)


async def sweep_outbox(ctx: dict[str, Any]) -> int:
    """Re-enqueue pending rows whose delivery is overdue.

    Covers Redis being down when the web process committed, a crash between commit and
    enqueue, and jobs lost for any other reason. The job id is derived from the row, so a row
    whose job is still queued is not enqueued twice.
    """
    st = state(ctx)
    settings = st.settings
    await ctx["redis"].set(heartbeat_key(settings.QUEUE_NAME), str(time.time()), ex=86400)
    cutoff = func.now() - timedelta(seconds=settings.OUTBOX_SWEEP_AFTER)
    async with st.sessionmaker() as session:
        ids = list(
            await session.scalars(
                select(Email.id)
                .where(
                    Email.status == EmailStatus.PENDING,
                    Email.next_attempt_at <= cutoff,
                    UNCLAIMED,  # not while a live run holds the claim
                )
                .order_by(Email.next_attempt_at)
                .limit(1000)
            )
        )
        if ids:
            # Push the due time forward so the next sweep does not pick them up again at once.
            await session.execute(
                update(Email).where(Email.id.in_(ids)).values(next_attempt_at=func.now())
            )
            await session.commit()
    enqueued = 0
    for email_id in ids:
        if await enqueue_send_email(ctx["redis"], email_id, queue_name=settings.QUEUE_NAME):
            enqueued += 1
    if ids:
        log.info("sweeper: %s overdue pending emails, %s enqueued", len(ids), enqueued)
    return enqueued
