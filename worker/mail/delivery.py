"""Delivery and the cron jobs: thin steps around the outbox row.

:func:`deliver_email` claims the row for a while (a lease), renders, delivers and records the
outcome; ``worker.dispatch`` runs it for every id taken off the due set. The database row, not
Redis, is the source of truth: a delivery may run twice (a sweeper re-announcement, a killed
worker), and a row that is no longer pending, or that a live run has claimed, is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.policy import SMTPUTF8
from typing import Any

from jinja2 import TemplateError
from pydantic import ValidationError

from shared import i18n
from shared.jobs import (
    PRIORITY_KINDS,
    EmailKind,
    emails_due_key,
    enqueue_send_email,
    parse_context,
)
from shared.message_ids import message_id_for
from shared.models import EmailStatus
from shared.services import bounces
from shared.services.operations import outbox_stats, purge_expired
from shared.verp import bounce_address
from worker import metrics
from worker.context import OUTAGES, WorkerState, state
from worker.mail.mime import compose
from worker.mail.prepare import Account, OutboxEmail, Skip, prepare
from worker.mail.signing import DkimSigner
from worker.mail.smtp import DeliveryError, Envelope, Outgoing, RecipientRefused
from worker.mail.store import RecordedOutcome, take_overdue
from worker.throttle import backoff_delay

log = logging.getLogger(__name__)


# A suppressed address still gets the link confirming it as someone's new address: that
# message is the test of whether the address works now.
SENT_WHEN_SUPPRESSED = frozenset({EmailKind.EMAIL_CHANGE_CONFIRM})
SHORT_WAIT = 1.0  # seconds: wait for the budget in the job; longer waits go back to the queue


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: str
    detail: str
    retry_in: float | None = None
    held: str | None = None  # why a message was held back without an attempt
    suppress: bool = False  # the server refused the address itself: add it to the list


async def deliver_email(st: WorkerState, email_id: int) -> float | None:
    """Deliver outbox row ``email_id``; returns in how many seconds to try it again, if at all.

    Claim the row (a lease, one batched UPDATE), deliver without holding a transaction or a
    connection, then record the outcome: in a batch with other deliveries' unless it causes
    more (a permanent failure: an admin alert, perhaps a suppression), then in its own
    transaction with what it causes.
    """
    email = await st.store.claim(email_id)
    if email is None:
        log.debug("email %s not pending, or claimed by another run", email_id)
        return None
    # From here on, whatever goes wrong (a crash, a timeout, the database) the claim simply
    # expires, after which the sweeper announces the row again and it is delivered.
    outcome = await _deliver(st, email)
    metrics.EMAILS.labels(email.kind, _metric_outcome(outcome)).inc()
    if outcome.status == EmailStatus.SENT:
        await st.store.mark_sent(email.id)
    elif outcome.status == EmailStatus.FAILED:
        await _record(st, email, outcome)
    else:
        await st.store.record(_as_recorded(email, outcome))
    # Recorded: the attempt is on record even if Redis loses the retry.
    if outcome.held is not None:
        log.info("email %s held back (%s) for %.1fs", email_id, outcome.held, outcome.retry_in)
        return outcome.retry_in
    if outcome.retry_in is not None:
        log.info(
            "email %s (%s) attempt %s failed temporarily: %s; retry in %.0fs",
            email_id,
            email.kind,
            email.attempts,
            outcome.detail,
            outcome.retry_in,
        )
        return outcome.retry_in
    log_outcome = log.warning if outcome.status == EmailStatus.FAILED else log.info
    log_outcome("email %s (%s) %s: %s", email_id, email.kind, outcome.status, outcome.detail)
    return None


async def send_email(ctx: dict[str, Any], email_id: int) -> str:
    """An arq job an older version queued for one email: hand the row to the due set, where
    this version delivers emails from (:func:`shared.jobs.enqueue_send_email`)."""
    st = state(ctx)
    await enqueue_send_email(st.redis, email_id, queue_name=st.settings.QUEUE_NAME)
    return "moved to the due set"


def _metric_outcome(outcome: _Outcome) -> str:
    if outcome.held is not None:
        return "held"
    if outcome.retry_in is not None:
        return "retried"
    return outcome.status


def _as_recorded(email: OutboxEmail, outcome: _Outcome) -> RecordedOutcome:
    """What the row records: a held-back message keeps its last attempt's error."""
    return RecordedOutcome(
        email_id=email.id,
        status=outcome.status,
        attempts=email.attempts,
        last_error=None if outcome.held is not None else outcome.detail[:2000],
        retry_in=outcome.retry_in,
    )


async def _record(st: WorkerState, email: OutboxEmail, outcome: _Outcome) -> None:
    """A permanent failure, with what it causes: the bounces use case owns it."""
    failure = bounces.FailedDelivery(
        email_id=email.id,
        kind=email.kind,
        recipient=email.recipient,
        attempts=email.attempts,
        detail=outcome.detail,
        address_refused=outcome.suppress,
    )
    await bounces.delivery_failed(st.services, failure)


async def _deliver(st: WorkerState, email: OutboxEmail) -> _Outcome:
    """Render, reserve a slot in the outbound budget, send, and classify what happened."""
    rendered = await _render(st, email)
    if isinstance(rendered, _Outcome):
        return rendered
    held = await _reserve_budget(st, email)
    if held is not None:
        return held
    message: Outgoing = rendered
    envelope = Envelope(_envelope_sender(st, email), email.recipient)
    if st.signer is not None:
        # About half a millisecond of CPU (dkimpy canonicalizes in Python): off the loop.
        message, envelope = await asyncio.to_thread(_signed, st.signer, rendered, envelope)
    email.attempts += 1
    try:
        with metrics.SMTP_SECONDS.time():
            reply = await st.mailer.send(
                message, envelope=envelope, priority=email.kind in PRIORITY_KINDS
            )
    except DeliveryError as error:
        return await _classify_failure(st, email, error)
    finally:
        metrics.SMTP_CONNECTIONS.set(st.mailer.limit.current)
    await st.breaker.success()
    return _Outcome(EmailStatus.SENT, reply)


def _envelope_sender(st: WorkerState, email: OutboxEmail) -> str:
    """MAIL FROM: the message's own signed bounce address (VERP) when BOUNCE_DOMAIN is set,
    so that whatever comes back names its outbox row; else the sender's address."""
    domain = st.settings.BOUNCE_DOMAIN
    if domain is None:
        return st.envelope_sender
    return bounce_address(email.id, domain, st.settings.SECRET_KEY.get_secret_value())


def _signed(signer: DkimSigner, message: Outgoing, envelope: Envelope) -> tuple[bytes, Envelope]:
    """The message as DKIM-signed wire bytes (an internationalised one is flattened with
    the SMTPUTF8 policy first, and its envelope then asks for SMTPUTF8)."""
    if isinstance(message, bytes):
        return signer.sign(message), envelope
    wire = message.as_bytes(policy=SMTPUTF8)
    return signer.sign(wire), replace(envelope, smtputf8=True)


async def _render(st: WorkerState, email: OutboxEmail) -> Outgoing | _Outcome:
    """The message's bytes, or the outcome when it must not (or cannot) be sent: stale
    (skipped), or a bad payload or template (failed at once: retrying cannot fix it)."""
    settings = st.settings
    if email.suppressed is not None and email.kind not in SENT_WHEN_SUPPRESSED:
        return _Outcome(EmailStatus.SKIPPED, f"{bounces.SUPPRESSED}: {email.suppressed}")
    languages = settings.LANGUAGES

    async def account(user_id: int) -> Account | None:
        # The recipient's own language and zone, once their account is read, over the
        # language of the request that caused the message (for which the block began).
        found = await st.store.user(user_id)
        if found is not None and found.language in languages:
            i18n.set_locale(found.language, i18n.valid_zone(found.time_zone) or "UTC")
        return found

    try:
        context = parse_context(email.kind, email.context)
        with i18n.use(email.locale if email.locale in languages else languages[0], "UTC"):
            variables = await prepare(account, email, context, settings=settings, tokens=st.tokens)
            if isinstance(variables, Skip):
                return _Outcome(EmailStatus.SKIPPED, variables.reason)
            rendered = st.renderer.render(email.kind, variables)
        return compose(
            rendered,
            sender=settings.MAIL_DEFAULT_SENDER,
            recipient=email.recipient,
            message_id=message_id_for(email.id, email.created_at, settings.MAIL_DEFAULT_SENDER),
            date=datetime.now(UTC),
        )
    except (ValidationError, ValueError, TemplateError, LookupError) as error:
        reason = " ".join(str(error).split())
        return _Outcome(EmailStatus.FAILED, f"cannot render: {type(error).__name__}: {reason}")


async def _reserve_budget(st: WorkerState, email: OutboxEmail) -> _Outcome | None:
    """Wait briefly for the circuit breaker and the outbound budget, or hold the message
    back (it keeps its attempts) when the wait would be long."""
    wait = await st.breaker.acquire()
    if not wait:
        wait = await st.budget.acquire(email.recipient)
        if wait > SHORT_WAIT:
            await st.budget.cancel(email.recipient)  # the slot goes to one that can wait
            await st.breaker.release()  # a half-open trial that will not happen now
    if wait > SHORT_WAIT:
        reason = "SMTP server failing; sending paused" if st.breaker.is_open else "outbound budget"
        return _Outcome(EmailStatus.PENDING, email.last_error or "", retry_in=wait, held=reason)
    if wait:
        await asyncio.sleep(wait)
    return None


async def _classify_failure(st: WorkerState, email: OutboxEmail, error: DeliveryError) -> _Outcome:
    """A permanent refusal fails the message; a temporary one is retried with backoff until
    the attempts run out, and counts toward the circuit breaker."""
    settings = st.settings
    if not error.temporary:
        await st.breaker.success()  # the server answered; it is the message it refused
        return _Outcome(
            EmailStatus.FAILED, error.reply, suppress=isinstance(error, RecipientRefused)
        )
    await st.breaker.failure()
    if email.attempts >= settings.MAIL_MAX_ATTEMPTS:
        return _Outcome(
            EmailStatus.FAILED, f"gave up after {email.attempts} attempts: {error.reply}"
        )
    delay = backoff_delay(
        email.attempts, base=settings.MAIL_RETRY_BASE_DELAY, cap=settings.MAIL_RETRY_MAX_DELAY
    )
    return _Outcome(EmailStatus.PENDING, error.reply, retry_in=delay)


@OUTAGES.quiet
async def sweep_outbox(ctx: dict[str, Any]) -> int:
    """Re-enqueue pending emails whose delivery is overdue (webhook deliveries have their
    own sweep: worker.webhooks.jobs).

    Covers Redis being down when the web process committed, a crash between commit and
    enqueue, and jobs lost for any other reason. The job id is derived from the row, so a row
    whose job is still queued is not enqueued twice.
    """
    st = state(ctx)
    settings = st.settings
    metrics.LAST_SWEEP.set(time.time())
    async with st.sessionmaker() as session, session.begin():
        overdue = await take_overdue(session, after=settings.OUTBOX_SWEEP_AFTER)
    enqueued = 0
    for email_id, kind in overdue:
        if await enqueue_send_email(
            st.redis, email_id, queue_name=settings.QUEUE_NAME, priority=kind in PRIORITY_KINDS
        ):
            enqueued += 1
    ids = [email_id for email_id, _ in overdue]
    if ids:
        log.info("sweeper: %s overdue pending emails, %s enqueued", len(ids), enqueued)
    await _refresh_gauges(st)
    return enqueued


async def _refresh_gauges(st: WorkerState) -> None:
    async with st.sessionmaker() as session:
        stats = await outbox_stats(session)
        suppressed = await bounces.counts(session)
        reports = await bounces.recent_report_counts(session)
    for cause in bounces.Cause:
        metrics.SUPPRESSIONS.labels(cause.value).set(suppressed.get(cause.value, 0))
    for outcome in bounces.Outcome:
        metrics.BOUNCE_REPORTS.labels(outcome.value).set(reports.get(outcome.value, 0))
    metrics.OUTBOX.labels("pending").set(stats.pending)
    metrics.OUTBOX.labels("failed").set(stats.failed)
    metrics.OLDEST_PENDING.set(stats.oldest_pending_age)
    queue_name = st.settings.QUEUE_NAME
    async with st.redis.pipeline(transaction=False) as pipe:
        pipe.zcard(queue_name)
        pipe.zcard(emails_due_key(queue_name))
        jobs, emails = await pipe.execute()
    metrics.QUEUE_DEPTH.set(jobs + emails)


@OUTAGES.quiet
async def purge(ctx: dict[str, Any]) -> str:
    """Forget what is past its time: outbox rows past retention, accounts never confirmed
    within their confirmation window, and the username holds that ended."""
    st = state(ctx)
    async with st.sessionmaker() as session:
        purged = await purge_expired(session, st.settings)
    if any(purged.values()):
        log.info("purge: %s", ", ".join(f"{count} {what}" for what, count in purged.items()))
    return str(purged)
