"""Per-client-address limits for the form POSTs that attackers hammer (login, reset)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from quart import request
from werkzeug.exceptions import TooManyRequests

from shared.ratelimit import hit
from web.extensions import services

P = ParamSpec("P")
T = TypeVar("T")
WINDOW = 60


def client_address() -> str:
    """The peer address. Behind a reverse proxy, run hypercorn with its proxy-headers
    middleware so this is the client, not the proxy."""
    return request.remote_addr or "unknown"


def limit_posts(name: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Allow ``POSTS_PER_MINUTE`` POSTs a minute per client address; past it, a 429 page
    with ``Retry-After``. GETs (showing the form) are not counted."""

    def decorator(view: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @wraps(view)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> T:
            if request.method == "POST":
                context = services()
                verdict = await hit(
                    context.redis,
                    f"posts:{name}",
                    client_address(),
                    limit=context.settings.POSTS_PER_MINUTE,
                    window=WINDOW,
                )
                if not verdict.allowed:
                    raise TooManyRequests(
                        description=(
                            f"Too many attempts from your network. Please wait "
                            f"{verdict.retry_after} seconds and try again."
                        ),
                        retry_after=verdict.retry_after,
                    )
            return await view(*args, **kwargs)

        return limited

    return decorator
