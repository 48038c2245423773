"""The webhook delivery job and the sweep of overdue deliveries.

The same design as the emails' (``worker/mail/delivery.py``): the ``webhook_deliveries`` row is the
source of truth, a run claims it for a while (a lease), POSTs without holding a transaction,
and records what happened. At least once: a worker killed after the receiver answered but
before the record is written delivers the message again, with the same ``webhook-id``, which
receivers deduplicate on. Ordering is not promised (retries overtake).

Failures: 5xx, 408, 429, timeouts and refused connections are retried with backoff and
jitter (a receiver's Retry-After is honoured up to the cap) until WEBHOOK_MAX_ATTEMPTS;
other answers (4xx, 3xx) and addresses the SSRF guard refuses fail at once. An endpoint that
keeps failing trips its own circuit breaker: its deliveries wait without spending attempts,
and other endpoints are unaffected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from arq import Retry
from sqlalchemy import Table, func, update
from sqlalchemy.sql.dml import ReturningUpdate, Update

from shared.alerts import alert_admins
from shared.jobs import enqueue_deliver_webhook
from shared.models import EmailStatus, WebhookDelivery, WebhookEndpoint, still_pending
from shared.outbox import transaction
from shared.services.webhooks import sealer
from worker import metrics
from worker.context import OUTAGES, WorkerState, state
from worker.sweeps import sweep_overdue, unclaimed
from worker.throttle import backoff_delay
from worker.webhooks.sender import Reply

log = logging.getLogger(__name__)

DELIVERIES = cast(Table, WebhookDelivery.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
UNCLAIMED = unclaimed(DELIVERIES)


@dataclass(slots=True)
class Claimed:
    id: int
    endpoint_id: int
    url: str
    secret_encrypted: str
    message_id: str
    event_type: str
    body: str
    attempts: int


async def deliver_webhook(ctx: dict[str, Any], delivery_id: int) -> str:
    """POST delivery row ``delivery_id`` to its endpoint; returns what happened, in words."""
    st = state(ctx)
    delivery = await _claim(st, delivery_id)
    if delivery is None:
        return "not pending, or claimed by another run"
    breaker = st.webhook_breaker(delivery.endpoint_id)
    wait = await breaker.acquire()
    if wait:
        metrics.WEBHOOKS.labels("held").inc()
        await _record(st, delivery, {"next_attempt_at": timedelta(seconds=wait)})
        raise Retry(defer=wait)
    secret = sealer(st.settings.SECRET_KEY.get_secret_value()).open(delivery.secret_encrypted)
    if secret is None:
        await breaker.release()
        reply = Reply(False, False, "the endpoint's secret cannot be read (SECRET_KEY changed)")
    else:
        with metrics.WEBHOOK_SECONDS.time():
            reply = await st.webhooks.post(delivery.url, secret, delivery.message_id, delivery.body)
    delivery.attempts += 1
    return await _settle(st, delivery, reply)


async def _settle(st: WorkerState, delivery: Claimed, reply: Reply) -> str:
    """Record the attempt; the breaker hears of failures the receiver's side caused."""
    settings = st.settings
    breaker = st.webhook_breaker(delivery.endpoint_id)
    values: dict[str, Any] = {
        "attempts": delivery.attempts,
        "last_status_code": reply.status_code,
    }
    if reply.delivered:
        await breaker.success()
        metrics.WEBHOOKS.labels("sent").inc()
        await _record(st, delivery, {**values, "status": EmailStatus.SENT, "last_error": None,
                                     "delivered_at": func.now()})  # fmt: skip
        return f"sent: {reply.detail}"
    values["last_error"] = reply.detail[:2000]
    if reply.temporary and delivery.attempts < settings.WEBHOOK_MAX_ATTEMPTS:
        await breaker.failure()
        delay = backoff_delay(
            delivery.attempts,
            base=settings.WEBHOOK_RETRY_BASE_DELAY,
            cap=settings.WEBHOOK_RETRY_MAX_DELAY,
        )
        if reply.retry_after is not None:
            delay = min(max(delay, reply.retry_after), settings.WEBHOOK_RETRY_MAX_DELAY)
        metrics.WEBHOOKS.labels("retried").inc()
        await _record(st, delivery, {**values, "next_attempt_at": timedelta(seconds=delay)})
        log.info(
            "webhook %s (%s) to endpoint %s, attempt %s: %s; retry in %.0fs",
            delivery.id,
            delivery.event_type,
            delivery.endpoint_id,
            delivery.attempts,
            reply.detail,
            delay,
        )
        raise Retry(defer=delay)
    if reply.temporary:
        await breaker.failure()
        values["last_error"] = f"gave up after {delivery.attempts} attempts: {reply.detail}"
    elif reply.status_code is not None:
        await breaker.success()  # the receiver answered; it is this message it refused
    metrics.WEBHOOKS.labels("failed").inc()
    await _record(st, delivery, {**values, "status": EmailStatus.FAILED}, failed=True)
    log.warning(
        "webhook %s (%s) to endpoint %s failed: %s",
        delivery.id,
        delivery.event_type,
        delivery.endpoint_id,
        values["last_error"],
    )
    return f"failed: {values['last_error']}"


async def _claim(st: WorkerState, delivery_id: int) -> Claimed | None:
    """Claim the row if it is pending and no live run holds it (one UPDATE ... FROM)."""
    lease = timedelta(seconds=st.settings.WORKER_JOB_TIMEOUT + 5)
    statement = claim_statement(delivery_id, lease)
    async with st.sessionmaker() as session, session.begin():
        row = (await session.execute(statement)).one_or_none()
    return Claimed(**row._asdict()) if row is not None else None


def claim_statement(delivery_id: int, lease: timedelta) -> ReturningUpdate[Any]:
    """The claim of one delivery, with what sending it needs (its endpoint's URL and key)."""
    return (
        update(DELIVERIES)
        .where(
            DELIVERIES.c.id == delivery_id,
            still_pending(DELIVERIES.c.status),  # found by primary key, whatever the backlog
            DELIVERIES.c.endpoint_id == ENDPOINTS.c.id,
            UNCLAIMED,
        )
        .values(claimed_until=func.now() + lease)
        .returning(
            DELIVERIES.c.id,
            DELIVERIES.c.endpoint_id,
            ENDPOINTS.c.url,
            ENDPOINTS.c.secret_encrypted,
            DELIVERIES.c.message_id,
            DELIVERIES.c.event_type,
            DELIVERIES.c.body,
            DELIVERIES.c.attempts,
        )
    )


def record_statement(delivery_id: int, values: dict[str, Any]) -> Update:
    """A delivery's outcome, its claim released, if it is still pending."""
    return (
        update(DELIVERIES)
        .where(DELIVERIES.c.id == delivery_id, still_pending(DELIVERIES.c.status))
        .values(**values, claimed_until=None)
    )


async def _record(
    st: WorkerState, delivery: Claimed, values: dict[str, Any], *, failed: bool = False
) -> None:
    """Write the outcome and release the claim; a permanent failure also alerts the admins
    (at most once per endpoint per quiet period), in the same unit of work."""
    if isinstance(delay := values.get("next_attempt_at"), timedelta):
        values = {**values, "next_attempt_at": func.now() + delay}
    settings = st.settings
    async with transaction(st.sessionmaker, st.redis, queue_name=settings.QUEUE_NAME) as session:
        await session.execute(record_statement(delivery.id, values))
        if failed:
            await alert_admins(
                session,
                st.redis,
                settings,
                key=f"webhook:{delivery.endpoint_id}",
                summary=f"Webhook deliveries to endpoint {delivery.endpoint_id} are failing",
                details=(
                    f"Endpoint {delivery.endpoint_id}: {delivery.url}\n"
                    f"Delivery {delivery.id} ({delivery.event_type}): {values['last_error']}\n"
                    "List them with `python -m worker webhooks failures`; "
                    "`python -m worker webhooks retry` sends them again."
                ),
            )


@OUTAGES.quiet
async def sweep_webhooks(ctx: dict[str, Any], *, limit: int = 1000) -> int:
    """Cron: re-enqueue overdue pending deliveries (worker/sweeps.py)."""
    st = state(ctx)

    async def enqueue(delivery_id: int) -> str | None:
        return await enqueue_deliver_webhook(
            st.redis, delivery_id, queue_name=st.settings.QUEUE_NAME
        )

    return await sweep_overdue(st, DELIVERIES, enqueue, "webhook deliveries", limit=limit)
