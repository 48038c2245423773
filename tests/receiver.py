"""A real HTTP server on loopback that receives webhooks the way a subscriber would: it
verifies each signature with the Standard Webhooks reference library and keeps what came.

It runs in a thread of its own (the standard library's server), so the worker under test
talks to it over real sockets whatever the test's event loop is doing. Its answers can be
scripted (``statuses``: one per request, then 200) and slowed (``delay``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def message(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.body)
        return payload

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    port: int
    secret: str | None = None  # set after `webhooks add` printed it
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        verified = False
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else 200
            self.received.append(Received(headers, body, verified))
        return status

    def ids(self) -> list[str]:
        with self._lock:
            return [item.id for item in self.received]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sender pools connections

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if len(body) < length:  # the sender went away mid-request: nothing was received
                self.close_connection = True
                return
            headers = {key.lower(): value for key, value in self.headers.items()}
            status = receiver.answer(headers, body)
            reply = b"ok" if status < 300 else b"no"
            try:
                self.send_response(status)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except OSError:  # the sender was killed while we answered
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serving(receiver: Receiver) -> Iterator[Receiver]:
    """Serve ``receiver`` on its port until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), _handler(receiver))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
