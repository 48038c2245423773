"""Work a request defers past its answer starts once the answer has been sent.

Use cases defer what must not cost answer time, or must not show in it (the failed sign-in's
event for a known account, the account a registration creates): an insert that only some
answers cause would tell a stranger which addresses have accounts. Quart's background tasks
start at once, though, and share the event loop with the rest of the request: a deferred
insert ran while the page was still being rendered and sent, and a wrong password for a known
address answered ~10 ms later than one for an unknown address (the timing test caught it).
This middleware holds the deferred work until the response's last byte has been handed to
the server, then starts it.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from shared.services.context import Defer
from web.access_log import Asgi

_HELD: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "after_response", default=None
)


class AfterResponse:
    """ASGI middleware: starts the work deferred during an HTTP request after its response."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: list[Callable[[], None]] = []
        token = _HELD.set(held)  # the request's tasks inherit this context, and so the list
        try:
            await self.app(scope, receive, send)
        finally:
            _HELD.reset(token)  # what the held work defers in turn starts at once
            for start in held:
                start()


def after_response(start: Defer) -> Defer:
    """A :data:`~shared.services.context.Defer` that holds work until the current response
    has been sent, and outside a request starts it at once (``start``: how to run it in the
    background, e.g. Quart's ``add_background_task``)."""

    def defer(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        held = _HELD.get()
        if held is None:
            start(func, *args, **kwargs)
        else:
            # Started later, in the request's context as it is now (where the security
            # events' origin is set), minus the hold: what that work defers starts at once.
            context = contextvars.copy_context()
            held.append(functools.partial(context.run, _start_unheld, start, func, *args, **kwargs))

    return defer


def _start_unheld(start: Defer, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    _HELD.set(None)
    start(func, *args, **kwargs)
