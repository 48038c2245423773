"""``python -m worker bounces``: an SMTP listener (aiosmtpd) for what comes back to the
bounce addresses, on BOUNCE_LISTEN.

It takes mail for BOUNCE_DOMAIN only (anything else: 550, it relays nothing), reads each
message as a DSN or ARF report (:mod:`worker.bounce_reports`) and records it through the
bounces use case before it answers 250; if recording fails it answers 451, so the sending
server tries again later and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.services import bounces
from shared.services.context import ServiceContext
from shared.settings import Settings
from worker.bounce_reports import understand

log = logging.getLogger(__name__)

MAX_REPORT_BYTES = 10 * 1024 * 1024  # a bounce carrying our whole message, with room


class BounceHandler:
    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        domain = context.settings.BOUNCE_DOMAIN
        assert domain is not None
        self.domain = domain

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.rpartition("@")[2].lower().rstrip(".") != self.domain:
            return f"550 5.7.1 this server takes mail for {self.domain} only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        assert isinstance(raw, bytes)
        settings = self.context.settings
        try:
            report = await asyncio.to_thread(
                understand,
                raw,
                list(envelope.rcpt_tos),
                domain=self.domain,
                secret_key=settings.SECRET_KEY.get_secret_value(),
            )
            outcome = await bounces.record_report(self.context, report)
        except Exception:
            log.exception("could not record a bounce report; the sender will try again")
            return "451 4.3.0 could not record the report now; try again later"
        log.info("bounce report: %s (outbox %s)", outcome.value, report.email_id)
        return "250 2.0.0 recorded"


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Listen until SIGTERM or SIGINT (or until the task is cancelled)."""
    context = ServiceContext.open(settings, application_name="bounces", pool_size=2)
    handler = BounceHandler(context)
    host, _, port = settings.BOUNCE_LISTEN.rpartition(":")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            data_size_limit=MAX_REPORT_BYTES,
            hostname=handler.domain,
            ident="accounts bounce receiver",
            timeout=60,
        ),
        host.strip("[]"),
        int(port),
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signum, stop.set)
    log.info("bounce receiver for %s listening on %s", handler.domain, settings.BOUNCE_LISTEN)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        await context.close()


def run(settings: Settings) -> int:
    if settings.BOUNCE_DOMAIN is None:
        log.error("set BOUNCE_DOMAIN (the domain of the bounce addresses) to receive bounces")
        return 2
    try:
        asyncio.run(serve(settings))
    except OSError as error:
        log.error("cannot listen on %s: %s", settings.BOUNCE_LISTEN, error.strerror)
        return 1
    return 0
