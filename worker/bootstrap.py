"""The worker's composition root: builds everything a worker process uses (database engines,
the SMTP pool, the renderer, the throttles) from the typed settings, and the arq options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arq import cron, func

from shared import i18n
from shared.db import create_engine, create_sessionmaker
from shared.heap import freeze_startup_objects
from shared.jobs import (
    DELIVER_LOGOUT,
    DELIVER_WEBHOOK,
    PURGE,
    SEND_EMAIL,
    SWEEP_LOGOUTS,
    SWEEP_OUTBOX,
    SWEEP_WEBHOOKS,
    redis_settings,
)
from shared.ratelimit import Limits
from shared.services.context import ServiceContext
from shared.settings import Settings
from shared.tokens import Tokens
from worker import metrics
from worker.context import STATE_KEY, WorkerState, state
from worker.dispatch import DeliveryWorker
from worker.identity import deliver_logout, sweep_logouts
from worker.mail.delivery import deliver_email, purge, send_email, sweep_outbox
from worker.mail.render import EmailRenderer
from worker.mail.signing import DkimSigner
from worker.mail.smtp import SMTPConfig, SMTPPool
from worker.mail.store import STORE_CONNECTIONS, OutboxStore
from worker.throttle import CircuitBreaker, OutboundBudget
from worker.webhooks.jobs import deliver_webhook, sweep_webhooks
from worker.webhooks.sender import WebhookSender

SITE_NAME = "Accounts"
# How long a worker keeps trying to reach Redis before it gives up (its supervisor restarts it).
REDIS_RETRIES = 30


def smtp_config(settings: Settings) -> SMTPConfig:
    return SMTPConfig(
        hostname=settings.MAIL_SERVER,
        port=settings.MAIL_PORT,
        use_tls=settings.MAIL_USE_SSL,
        start_tls=settings.MAIL_USE_TLS,
        username=settings.MAIL_USERNAME,
        password=settings.MAIL_PASSWORD.get_secret_value() if settings.MAIL_PASSWORD else None,
        timeout=settings.MAIL_TIMEOUT,
        validate_certs=settings.MAIL_VALIDATE_CERTS,
        cert_bundle=settings.MAIL_CA_BUNDLE,
    )


def dkim_signer(settings: Settings) -> DkimSigner | None:
    """The DKIM signer the settings describe, tried once at start-up: a key that cannot
    sign stops the worker now, not every message later."""
    if not (settings.DKIM_DOMAIN and settings.DKIM_SELECTOR and settings.DKIM_PRIVATE_KEY):
        return None
    signer = DkimSigner(
        domain=settings.DKIM_DOMAIN,
        selector=settings.DKIM_SELECTOR,
        private_key=settings.DKIM_PRIVATE_KEY.get_secret_value().encode(),
        algorithm=settings.DKIM_ALGORITHM,
    )
    signer.sign(b"From: a@example.com\r\nSubject: start-up check\r\n\r\nbody\r\n")
    return signer


def webhook_sender(settings: Settings) -> WebhookSender:
    return WebhookSender(
        timeout=settings.webhook_timeout, allow_private=settings.WEBHOOKS_ALLOW_PRIVATE
    )


def claim_lease(settings: Settings) -> float:
    """How long a delivery's claim on its row lasts, in seconds.

    Longer than any delivery may run (it is stopped at WORKER_JOB_TIMEOUT), so a live run
    never loses its claim; a dead worker's claims run out soon after, and the sweeper then
    announces those rows again.
    """
    return settings.WORKER_JOB_TIMEOUT + 5


def worker_options(settings: Settings, *, freeze_after_startup: bool = False) -> dict[str, Any]:
    """Keyword arguments for :class:`~worker.dispatch.DeliveryWorker` (arq.Worker's and its
    own), one place for every tuning decision.
    ``freeze_after_startup``: for ``python -m worker`` (see :mod:`shared.heap`); tests leave
    their process's collector alone."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        # Jobs hold a connection only for a statement or two (claims are leases, not locks
        # held while the SMTP server answers), so the pool need not grow with WORKER_MAX_JOBS.
        # The delivery store's engine takes STORE_CONNECTIONS of the process's budget.
        engine = create_engine(
            settings.DATABASE_URL,
            application_name="worker",
            pool_size=settings.DATABASE_CONNECTIONS - STORE_CONNECTIONS,
            pool_timeout=settings.DATABASE_POOL_TIMEOUT,
        )
        sessionmaker = create_sessionmaker(engine)
        tokens = Tokens(settings.SECRET_KEY.get_secret_value())
        ctx[STATE_KEY] = WorkerState(
            settings=settings,
            redis=ctx["redis"],
            engine=engine,
            sessionmaker=sessionmaker,
            store=OutboxStore(
                settings.DATABASE_URL,
                application_name="worker-delivery",
                lease=claim_lease(settings),
                linger=settings.WORKER_BATCH_LINGER,
                max_batch=settings.WORKER_MAX_JOBS,
            ),
            mailer=SMTPPool(
                smtp_config(settings),
                size=settings.MAIL_POOL_SIZE,
                # Never more connections than deliveries can be in flight at once.
                max_size=min(settings.MAIL_MAX_CONNECTIONS, settings.WORKER_MAX_JOBS),
            ),
            renderer=email_renderer(settings),
            tokens=tokens,
            budget=OutboundBudget(
                ctx["redis"],
                key_prefix=settings.REDIS_KEY_PREFIX,
                per_second=settings.MAIL_RATE_PER_SECOND,
                per_domain_per_minute=settings.MAIL_DOMAIN_RATE_PER_MINUTE,
                max_batch=settings.WORKER_MAX_JOBS,
                linger=settings.WORKER_BATCH_LINGER,
            ),
            breaker=CircuitBreaker(
                ctx["redis"],
                key_prefix=settings.REDIS_KEY_PREFIX,
                name="smtp",
                threshold=settings.MAIL_BREAKER_THRESHOLD,
                cooldown=settings.MAIL_BREAKER_COOLDOWN,
            ),
            signer=dkim_signer(settings),
            webhooks=webhook_sender(settings),
            services=ServiceContext(
                settings=settings,
                engine=engine,
                sessionmaker=sessionmaker,
                redis=ctx["redis"],
                tokens=tokens,
                limits=Limits(ctx["redis"], key_prefix=settings.REDIS_KEY_PREFIX),
            ),
        )

        metrics.BREAKER_OPEN.set_function(lambda: float(ctx[STATE_KEY].breaker.is_open))
        if freeze_after_startup:
            freeze_startup_objects()  # short full collections while delivering (shared.heap)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        state: WorkerState | None = ctx.get(STATE_KEY)
        if state is not None:
            await state.mailer.close()
            await state.webhooks.close()
            await state.engine.dispose()
            await state.store.close()

    return {
        "functions": [
            # Emails queued as arq jobs by an older version: moved to the due set.
            func(send_email, name=SEND_EMAIL, keep_result=0),
            # Attempts are counted on the row (WEBHOOK_MAX_ATTEMPTS); arq's count also grows
            # while an endpoint's breaker holds deliveries back, hence the generous backstop.
            func(
                deliver_webhook,
                name=DELIVER_WEBHOOK,
                keep_result=0,
                max_tries=settings.WEBHOOK_MAX_ATTEMPTS * 4,
            ),
            func(
                deliver_logout,
                name=DELIVER_LOGOUT,
                keep_result=0,
                max_tries=settings.WEBHOOK_MAX_ATTEMPTS * 2,
            ),
        ],
        "cron_jobs": [
            # Each domain sweeps its own outbox, every OUTBOX_SWEEP_EVERY seconds.
            *(
                cron(
                    sweep,
                    name=name,
                    second=set(range(0, 60, settings.OUTBOX_SWEEP_EVERY)),
                    run_at_startup=True,
                    unique=True,
                    # arq re-runs a killed worker's jobs after the longest timeout + 10 s, so
                    # no function may have a longer timeout than a delivery.
                    timeout=settings.WORKER_JOB_TIMEOUT,
                    keep_result=0,
                )
                for sweep, name in (
                    (sweep_outbox, SWEEP_OUTBOX),
                    (sweep_webhooks, SWEEP_WEBHOOKS),
                    (sweep_logouts, SWEEP_LOGOUTS),
                )
            ),
            # Hourly, at a minute of its own; batched deletes, each a short transaction.
            cron(
                purge,
                name=PURGE,
                minute=17,
                second=30,
                unique=True,
                timeout=settings.WORKER_JOB_TIMEOUT,
                keep_result=0,
            ),
        ],
        "queue_name": settings.QUEUE_NAME,
        "redis_settings": redis_settings(settings.REDIS_URL, retries=REDIS_RETRIES),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "max_jobs": settings.WORKER_MAX_JOBS,
        "job_timeout": settings.WORKER_JOB_TIMEOUT,
        "poll_delay": settings.WORKER_POLL_DELAY,
        "ring_linger": settings.WORKER_BATCH_LINGER,
        "keep_result": 60,
        "health_check_interval": 10,
        # On SIGTERM, stop taking jobs and give in-flight deliveries time to finish.
        "job_completion_wait": 20,
        "max_burst_jobs": -1,
    }


async def _deliver(ctx: dict[str, Any], email_id: int) -> float | None:
    return await deliver_email(state(ctx), email_id)


def create_worker(
    settings: Settings, *, freeze_after_startup: bool = False, **overrides: Any
) -> DeliveryWorker:
    """The worker process's arq worker; emails from the due set are delivered by
    :func:`worker.mail.delivery.deliver_email` beside the arq jobs."""
    options = worker_options(settings, freeze_after_startup=freeze_after_startup)
    return DeliveryWorker(deliver_email=_deliver, **{**options, **overrides})


def email_renderer(settings: Settings) -> EmailRenderer:
    """The renderer, over this deployment's catalogs (LOCALES_DIR)."""
    i18n.configure(Path(settings.LOCALES_DIR) if settings.LOCALES_DIR else None)
    return EmailRenderer(site_name=SITE_NAME, base_url=settings.base_url)
