"""The typed state a worker process shares between its jobs (arq passes a plain dict; the
composition root, :mod:`worker.bootstrap`, puts one of these in it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import SessionMaker
from shared.outages import OutageLog
from shared.services.context import ServiceContext
from shared.settings import Settings
from shared.tokens import Tokens
from worker.mail.render import EmailRenderer
from worker.mail.signing import DkimSigner
from worker.mail.smtp import SMTPPool
from worker.mail.store import OutboxStore
from worker.throttle import CircuitBreaker, OutboundBudget
from worker.webhooks.sender import WebhookSender

STATE_KEY = "state"
# One line when PostgreSQL (or Redis) stops answering this worker, one when it is back,
# instead of a traceback at every sweep and delivery meanwhile.
OUTAGES = OutageLog(
    logging.getLogger("worker"), "emails, webhooks and back-channel logouts wait in the outbox"
)


@dataclass(slots=True)
class WorkerState:
    settings: Settings
    redis: ArqRedis  # arq's own connection: the queue, the heartbeat, alert de-duplication
    engine: AsyncEngine
    sessionmaker: SessionMaker
    store: OutboxStore
    mailer: SMTPPool
    renderer: EmailRenderer
    tokens: Tokens
    budget: OutboundBudget
    breaker: CircuitBreaker
    webhooks: WebhookSender
    services: ServiceContext  # the use cases' context, on this process's engine and Redis
    signer: DkimSigner | None = None  # DKIM, when configured
    envelope_sender: str = ""  # MAIL FROM: the address in MAIL_DEFAULT_SENDER
    # One circuit breaker per webhook endpoint (its state in Redis; these are the handles).
    webhook_breakers: dict[int, CircuitBreaker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.envelope_sender = parseaddr(self.settings.MAIL_DEFAULT_SENDER)[1]

    def webhook_breaker(self, endpoint_id: int) -> CircuitBreaker:
        breaker = self.webhook_breakers.get(endpoint_id)
        if breaker is None:
            breaker = self.webhook_breakers[endpoint_id] = CircuitBreaker(
                self.redis,
                key_prefix=self.settings.REDIS_KEY_PREFIX,
                name=f"webhook:{endpoint_id}",
                threshold=self.settings.WEBHOOK_BREAKER_THRESHOLD,
                cooldown=self.settings.WEBHOOK_BREAKER_COOLDOWN,
            )
        return breaker


def state(ctx: dict[str, Any]) -> WorkerState:
    value = ctx[STATE_KEY]
    assert isinstance(value, WorkerState)
    return value
