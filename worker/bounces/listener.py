"""``python -m worker bounces``: an SMTP listener (aiosmtpd) for what comes back to the
bounce addresses, on BOUNCE_LISTEN.

It takes mail for BOUNCE_DOMAIN only (anything else: 550, it relays nothing), reads each
message as a DSN or ARF report (:mod:`worker.bounces.reports`) and records it through the
bounces use case before it answers 250; if recording fails it answers 451, so the sending
server tries again later and nothing is lost.

Anyone on the internet may connect, so what one sender can take is bounded: connections at
once per client address and in all, a total deadline per connection (aiosmtpd's timeout is
per read: one byte every 20 s would keep a connection forever), and reports per client
address and in all per minute, counted before the data is read (a temporary refusal: a
real mail server tries again later, nothing is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.ratelimit import Limit
from shared.services import bounces
from shared.services.context import ServiceContext
from shared.settings import Settings
from worker.bounces.reports import understand

log = logging.getLogger(__name__)

MAX_REPORT_BYTES = 2 * 1024 * 1024  # a bounce carrying our whole message, with room
CONNECTIONS_PER_CLIENT = 4
CONNECTIONS_IN_ALL = 64
CONNECTION_DEADLINE = 120.0  # seconds from connect to close, whatever the client sends
REPORTS_PER_CLIENT = Limit("bounce-reports-client", 60, 60)
REPORTS_IN_ALL = Limit("bounce-reports", 600, 60)


class Door:
    """Who is connected now, per client address: the caps are checked at connect."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def admit(self, client: str) -> bool:
        if self.open.get(client, 0) >= CONNECTIONS_PER_CLIENT:
            return False
        if sum(self.open.values()) >= CONNECTIONS_IN_ALL:
            return False
        self.open[client] = self.open.get(client, 0) + 1
        return True

    def leave(self, client: str) -> None:
        left = self.open.get(client, 0) - 1
        if left > 0:
            self.open[client] = left
        else:
            self.open.pop(client, None)


class GuardedSMTP(SMTP):
    """aiosmtpd's server with the door's caps and a total deadline per connection."""

    def __init__(self, handler: Any, door: Door, **options: Any) -> None:
        super().__init__(handler, **options)
        self._door = door
        self._client: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._client is not None:
            return  # STARTTLS: the same connection
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if peer else "unknown"
        if not self._door.admit(client):
            log.warning("bounce receiver: too many connections (from %s)", client)
            transport.write(b"421 4.7.0 too many connections; try again later\r\n")  # type: ignore[attr-defined]
            transport.close()
            return
        self._client = client
        self._deadline = self.loop.call_later(CONNECTION_DEADLINE, self._past_deadline)

    def _past_deadline(self) -> None:
        log.info("bounce receiver: closing a connection past its deadline (%s)", self._client)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self._client is not None:
            self._door.leave(self._client)
            self._client = None
        super().connection_lost(error)


class BounceHandler:
    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        domain = context.settings.BOUNCE_DOMAIN
        assert domain is not None
        self.domain = domain

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        peer = session.peer
        client = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        limits = self.context.limits
        verdict = await limits.hit_all((REPORTS_PER_CLIENT, client), (REPORTS_IN_ALL, "all"))
        if not verdict.allowed:
            return f"450 4.7.1 too many reports now; try again in {verdict.retry_after} s"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

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
    door = Door()
    server = await loop.create_server(
        lambda: GuardedSMTP(
            handler,
            door,
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
