"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0): tell each application that a
sign-in it was given has ended, with a signed logout token POSTed to its
``backchannel_logout_uri``.

The webhooks' design (worker/webhooks/jobs.py): the ``oidc_logout_deliveries`` row, written in
the transaction that ended the sign-in, is the truth; a run claims it for a while (a lease),
signs a fresh token (``jti`` new at each attempt, ``iat`` now: an application rejects stale
ones), POSTs without holding a transaction, and records what happened. 5xx, 408, 429,
timeouts and refused connections are retried with backoff up to WEBHOOK_MAX_ATTEMPTS; any
other answer fails the row with its reason (§2.8: 400 is how an application says no). The
same SSRF guard as webhooks applies.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from arq import Retry
from sqlalchemy import Table, func, update

from shared.jobs import enqueue_deliver_logout
from shared.models import EmailStatus, LogoutDelivery, still_pending
from shared.services.identity import signed
from shared.services.identity.logout import logout_token
from worker.context import OUTAGES, WorkerState, state
from worker.sweeps import sweep_overdue, unclaimed
from worker.throttle import backoff_delay
from worker.webhooks.sender import Reply

log = logging.getLogger(__name__)

DELIVERIES = cast(Table, LogoutDelivery.__table__)
UNCLAIMED = unclaimed(DELIVERIES)


@dataclass(slots=True)
class Claimed:
    id: int
    client_id: str
    uri: str
    subject: str
    sid: str
    attempts: int


async def deliver_logout(ctx: dict[str, Any], delivery_id: int) -> str:
    """Sign and POST logout delivery ``delivery_id``; what happened, in words."""
    st = state(ctx)
    lease = timedelta(seconds=st.settings.WORKER_JOB_TIMEOUT + 5)
    async with st.sessionmaker() as session, session.begin():
        row = (
            await session.execute(
                update(DELIVERIES)
                .where(
                    DELIVERIES.c.id == delivery_id, still_pending(DELIVERIES.c.status), UNCLAIMED
                )
                .values(claimed_until=func.now() + lease)
                .returning(
                    DELIVERIES.c.id,
                    DELIVERIES.c.client_id,
                    DELIVERIES.c.uri,
                    DELIVERIES.c.subject,
                    DELIVERIES.c.sid,
                    DELIVERIES.c.attempts,
                )
            )
        ).one_or_none()
    if row is None:
        return "not pending, or claimed by another run"
    delivery = Claimed(**row._asdict())
    claims = logout_token(
        st.settings.base_url, delivery, secrets.token_urlsafe(16), int(time.time())
    )
    token = await signed.sign(st.services, claims, typ="logout+jwt")
    reply = await st.webhooks.post_form(delivery.uri, {"logout_token": token})
    delivery.attempts += 1
    return await _settle(st, delivery, reply)


async def _settle(st: WorkerState, delivery: Claimed, reply: Reply) -> str:
    settings = st.settings
    values: dict[str, Any] = {"attempts": delivery.attempts, "claimed_until": None}
    if reply.delivered:
        sent = {"status": EmailStatus.SENT, "last_error": None, "delivered_at": func.now()}
        await _record(st, delivery.id, {**values, **sent})
        return f"sent: {reply.detail}"
    values["last_error"] = reply.detail[:2000]
    if reply.temporary and delivery.attempts < settings.WEBHOOK_MAX_ATTEMPTS:
        delay = backoff_delay(
            delivery.attempts,
            base=settings.WEBHOOK_RETRY_BASE_DELAY,
            cap=settings.WEBHOOK_RETRY_MAX_DELAY,
        )
        if reply.retry_after is not None:
            delay = min(max(delay, reply.retry_after), settings.WEBHOOK_RETRY_MAX_DELAY)
        next_attempt = func.now() + timedelta(seconds=delay)
        await _record(st, delivery.id, {**values, "next_attempt_at": next_attempt})
        log.info(
            "back-channel logout %s to %s, attempt %s: %s; retry in %.0fs",
            delivery.id, delivery.client_id, delivery.attempts, reply.detail, delay,
        )  # fmt: skip
        raise Retry(defer=delay)
    if reply.temporary:
        values["last_error"] = f"gave up after {delivery.attempts} attempts: {reply.detail}"
    await _record(st, delivery.id, {**values, "status": EmailStatus.FAILED})
    log.warning(
        "back-channel logout %s to %s failed: %s",
        delivery.id, delivery.client_id, values["last_error"],
    )  # fmt: skip
    return f"failed: {values['last_error']}"


async def _record(st: WorkerState, delivery_id: int, values: dict[str, Any]) -> None:
    async with st.sessionmaker() as session, session.begin():
        await session.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.id == delivery_id, still_pending(DELIVERIES.c.status))
            .values(**values)
        )


@OUTAGES.quiet
async def sweep_logouts(ctx: dict[str, Any], *, limit: int = 1000) -> int:
    """Cron: re-enqueue overdue pending deliveries (worker/sweeps.py)."""
    st = state(ctx)

    async def enqueue(delivery_id: int) -> str | None:
        return await enqueue_deliver_logout(
            st.redis, delivery_id, queue_name=st.settings.QUEUE_NAME
        )

    return await sweep_overdue(st, DELIVERIES, enqueue, "back-channel logouts", limit=limit)
