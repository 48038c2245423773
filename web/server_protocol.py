"""What one client can make a server process hold before its request has even begun:
uvicorn's httptools protocol with limits of its own, which uvicorn lacks (its keep-alive
timeout covers idle connections only; httptools takes headers of any size and number).

* the request head (request line and headers) in at most WEB_MAX_HEADER_BYTES and
  WEB_MAX_HEADERS fields, or ``431 Request Header Fields Too Large``;
* the head complete within WEB_HEADER_TIMEOUT seconds of its first byte, or ``408`` and the
  connection closes (a head dripping in a byte at a time holds nothing for long);
* at most WEB_CONNECTIONS_PER_CLIENT connections at once from one address (not behind
  TRUSTED_PROXIES, where every connection comes from the proxy): more are closed at once.

Each refusal closes its connection and is logged once, at WARNING, without request data.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import Settings

log = logging.getLogger("web.server")


def _answer(status: bytes, message: str) -> bytes:
    body = message.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


TOO_LARGE = _answer(b"431 Request Header Fields Too Large", "The request's headers are too large.")
TOO_SLOW = _answer(b"408 Request Timeout", "The request's headers took too long to arrive.")
TOO_MANY = _answer(b"503 Service Unavailable", "Too many connections from your address.")


class GuardedHttpTools(HttpToolsProtocol):
    max_head_bytes: ClassVar[int] = 32 * 1024
    max_headers: ClassVar[int] = 100
    head_timeout: ClassVar[float] = 10.0
    connections_per_client: ClassVar[int] = 0  # 0: no cap
    _open: ClassVar[dict[str, int]] = {}  # this process's connections per client address

    @classmethod
    def configure(cls, settings: Settings) -> None:
        """Take the limits from the settings (each server process, as its app is made)."""
        cls.max_head_bytes = settings.WEB_MAX_HEADER_BYTES
        cls.max_headers = settings.WEB_MAX_HEADERS
        cls.head_timeout = settings.WEB_HEADER_TIMEOUT
        behind_proxies = settings.TRUSTED_PROXIES > 0
        cls.connections_per_client = 0 if behind_proxies else settings.WEB_CONNECTIONS_PER_CLIENT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True
        self._head_bytes = 0
        self._fields = 0
        self._field_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._address = self.client[0] if self.client else None
        if self._address is not None and self.connections_per_client:
            count = self._open.get(self._address, 0) + 1
            self._open[self._address] = count
            if count > self.connections_per_client:
                self._refuse(TOO_MANY, "too many connections at once from one address")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._address is not None and self.connections_per_client:
            left = self._open.get(self._address, 1) - 1
            if left > 0:
                self._open[self._address] = left
            else:
                self._open.pop(self._address, None)
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused: nothing more is read
        if self._in_head:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)
            self._head_bytes += len(data)
        super().data_received(data)
        # Still reading the head after this chunk: every byte so far was head.
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(TOO_LARGE, "request headers too large")

    def on_url(self, url: bytes) -> None:
        self._field_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._field_bytes += len(name) + len(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        if self._fields > self.max_headers or self._field_bytes > self.max_head_bytes:
            self._refuse(TOO_LARGE, "request headers too large")
            # Stop the parser here: httptools turns this into a parser error, which uvicorn
            # answers with send_400_response (a no-op once refused).
            raise ConnectionAbortedError("refused")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._fields, self._field_bytes = True, 0, 0, 0

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():
            super().send_400_response(msg)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and self._head_bytes:
            self._refuse(TOO_SLOW, "request headers not complete in time")

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, answer: bytes, why: str) -> None:
        log.warning("refused a connection from %s: %s", self._address or "unknown", why)
        self._cancel_head_timer()
        self._in_head = False
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()
