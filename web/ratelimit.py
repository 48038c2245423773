"""Per-client-address limits for the form POSTs that attackers hammer (login, reset)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from quart import request
from werkzeug.exceptions import TooManyRequests

from shared import i18n
from shared.i18n import gettext as _
from shared.ratelimit import Limit
from web.extensions import services

P = ParamSpec("P")
T = TypeVar("T")
WINDOW = 60


def client_address() -> str:
    """The client's address: the peer's, or behind TRUSTED_PROXIES hops of reverse proxies
    the one they forwarded (see ``web.create_app``; never read from a header otherwise)."""
    return request.remote_addr or "unknown"


def limit_posts(name: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Allow ``POSTS_PER_MINUTE`` POSTs a minute per client address; past it, a 429 page
    with ``Retry-After``. GETs (showing the form) are not counted."""

    def decorator(view: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @wraps(view)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> T:
            if request.method == "POST":
                context = services()
                limit = Limit(f"posts:{name}", context.settings.POSTS_PER_MINUTE, WINDOW)
                verdict = await context.limits.hit(limit, client_address())
                if not verdict.allowed:
                    raise too_many(
                        _(
                            "Too many attempts from your network. Please wait %(wait)s and "
                            "try again."
                        )
                        % {"wait": i18n.format_duration(verdict.retry_after)},
                        verdict.retry_after,
                    )
            return await view(*args, **kwargs)

        return limited

    return decorator


def too_many(message: str, retry_after: int) -> TooManyRequests:
    """A 429 (a page, or a problem answer under /api) that says how long to wait."""
    return TooManyRequests(description=message, retry_after=retry_after)
