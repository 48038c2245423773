"""Work a request defers past its answer starts once the answer has been sent.

Use cases defer what must not cost answer time, or must not show in it (the failed sign-in's
event for a known account, the account a registration creates): an insert that only some
answers cause would tell a stranger which addresses have accounts. Quart's background tasks
start at once, though, and share the event loop with the rest of the request: a deferred
insert ran while the page was still being rendered and sent, and a wrong password for a known
address answered ~10 ms later than one for an unknown address (the timing test caught it).
This middleware holds the deferred work until the response's last byte has been handed to
the server, then starts it.

It also keeps that work bounded. Deferred work runs on the same event loop as the requests,
and under a flood of requests it fell behind without limit: at 490 answered resets a second
(rate limits ablated) one process had written 128 of 4,043 reset links by the end of an 8 s
burst, the rest held in memory, to be lost if the process died. While ``limit`` deferred
works are unfinished (counting the requests in progress that may defer one: any method but
GET, HEAD and OPTIONS), such requests wait before they are handled, so answers can never run
ahead of what is written by more than that. The wait is the same for every request,
whatever account it names: it shows how busy the process is, not who has an account.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from shared.services.context import Defer
from web.access_log import Asgi

_HELD: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "after_response", default=None
)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class DeferredWork:
    """The deferred works unfinished in this process, plus the requests let in that may add
    one; a request waits at the door while they number ``limit``."""

    def __init__(self, limit: int, *, on_change: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.unfinished = 0
        self._on_change = on_change
        self._room = asyncio.Event()
        self._room.set()

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Wait for room, then hold a place until the request is over (by then what it
        deferred is counted itself). Checking and taking the place happen with no await
        in between, so of the requests woken together only as many as there is room for
        go in."""
        while self.unfinished >= self.limit:
            await self._room.wait()
        self._moved(+1)
        try:
            yield
        finally:
            self._moved(-1)

    def tracked(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func``, counted as unfinished from now until it has returned or raised."""
        self._moved(+1)

        @functools.wraps(func)
        async def run(*args: Any, **kwargs: Any) -> Any:
            try:
                result = func(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result
            finally:
                self._moved(-1)

        return run

    def _moved(self, by: int) -> None:
        self.unfinished += by
        if self.unfinished < self.limit:
            self._room.set()
        else:
            self._room.clear()
        if self._on_change is not None:
            self._on_change(by)


class AfterResponse:
    """ASGI middleware: starts the work deferred during an HTTP request after its response,
    and holds requests that may defer more while ``deferred`` is full."""

    def __init__(self, app: Asgi, deferred: DeferredWork) -> None:
        self.app = app
        self.deferred = deferred

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in SAFE_METHODS:
            await self._handle(scope, receive, send)
        else:
            async with self.deferred.admitted():
                await self._handle(scope, receive, send)

    async def _handle(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        held: list[Callable[[], None]] = []
        token = _HELD.set(held)  # the request's tasks inherit this context, and so the list
        try:
            await self.app(scope, receive, send)
        finally:
            _HELD.reset(token)  # what the held work defers in turn starts at once
            for start in held:
                start()


def after_response(start: Defer, deferred: DeferredWork) -> Defer:
    """A :data:`~shared.services.context.Defer` that holds work until the current response
    has been sent, and outside a request starts it at once (``start``: how to run it in the
    background, e.g. Quart's ``add_background_task``); ``deferred`` counts it until done."""

    def defer(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        func = deferred.tracked(func)
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
