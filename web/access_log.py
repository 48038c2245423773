"""The access log, written by the app rather than by the ASGI server, so its rules hold
whichever server runs it (``python -m web`` uses uvicorn with its own access log off).

One line per response: client address, method, path, status, body bytes and time taken.
Never the query string: it may carry tokens (``?next=`` is harmless, but the rule is simpler
than the exceptions). Token-bearing paths are redacted by the log filter in ``shared.logs``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

logger = logging.getLogger("web.access")

Asgi = Any  # an ASGI application (Quart's asgi_app or another middleware)


class AccessLog:
    """ASGI middleware: logs each HTTP response once it has been sent."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        size = 0

        async def counting_send(message: Any) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            client = scope.get("client")
            logger.info(
                '%s "%s %s" %s %s %dus',
                client[0] if client else "-",
                scope["method"],
                scope["path"],  # the path only: no query string
                status or "-",
                size,
                (time.perf_counter() - started) * 1_000_000,
            )
