"""A local SMTP sink (aiosmtpd) for the dev stack and the tests.

It accepts every message, keeps it in memory for tests, optionally writes it as an ``.eml``
file under a folder, and logs the links it contains so a developer can click a confirmation
link straight from the terminal. Failure injection for tests: ``reply_queue`` holds SMTP
replies (e.g. ``"451 4.3.0 try later"``) given to the next DATA commands instead of accepting;
``refuse`` maps a recipient to the reply every message to it gets.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller

from devstack.servers import free_port

__all__ = ["MailSink", "ReceivedMessage", "free_port", "start_sink"]

log = logging.getLogger("mailsink")
LINK = re.compile(r"https?://[^\s<>\"')]+")


@dataclass(slots=True)
class ReceivedMessage:
    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage
    raw: bytes
    received_at: float  # time.time() at arrival, for latency measurements

    def part(self, content_type: str) -> str:
        for part in self.message.walk():
            if part.get_content_type() == content_type:
                return str(part.get_content())
        raise LookupError(f"no {content_type} part")

    @property
    def links(self) -> list[str]:
        return LINK.findall(self.part("text/plain"))


@dataclass
class MailSink:
    """aiosmtpd handler: ``handle_DATA`` stores the message (or replies as told)."""

    directory: Path | None = None
    messages: list[ReceivedMessage] = field(default_factory=list)
    reply_queue: deque[str] = field(default_factory=deque)
    refuse: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering DATA: a slow remote provider
    arrived: asyncio.Event | None = None
    pipelining: bool = False  # offer PIPELINING (RFC 2920), as most providers do
    refuse_recipients: dict[str, str] = field(default_factory=dict)  # refused at RCPT TO

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:  # aiosmtpd reads commands line by line: pipelined ones work
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse_recipients:
            return self.refuse_recipients[address]
        envelope.rcpt_options.extend(options)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.reply_queue:
            return self.reply_queue.popleft()
        for recipient in envelope.rcpt_tos:
            if recipient in self.refuse:
                return self.refuse[recipient]
        raw = bytes(envelope.original_content or envelope.content)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        received = ReceivedMessage(
            envelope_from=envelope.mail_from,
            envelope_to=list(envelope.rcpt_tos),
            message=parsed,
            raw=raw,
            received_at=time.time(),
        )
        self.messages.append(received)
        if self.directory is not None:
            self._store(received)
        return "250 2.0.0 OK: queued"

    def _store(self, received: ReceivedMessage) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(received.received_at))
        path = self.directory / f"{stamp}-{len(self.messages):04d}.eml"
        path.write_bytes(received.raw)
        log.info(
            "mail to %s: %r saved as %s",
            ", ".join(received.envelope_to),
            received.message["Subject"],
            path,
        )
        try:
            links = received.links
        except LookupError:
            links = []
        for link in links:
            if urlsplit(link).path.strip("/"):  # not the footer's bare site address
                log.info("  link: %s", link)


def start_sink(
    handler: MailSink, *, host: str = "127.0.0.1", port: int = 0, **controller_options: Any
) -> Controller:
    """Start an SMTP server thread for ``handler``; port 0 picks a free port.

    The port is in ``controller.port``.
    """
    controller = Controller(
        handler, hostname=host, port=port or free_port(host), **controller_options
    )
    controller.start()
    return controller
