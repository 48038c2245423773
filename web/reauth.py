"""Sensitive pages ask for a recent authentication ("sudo mode"): without one, the person is
sent to ``/account/reauthenticate`` and brought back. The use cases decide for themselves
(:mod:`shared.services.proof` raises :class:`ReauthenticationRequired`); this is what spares
the person a form filled in for nothing."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from quart import redirect, request, url_for
from quart.typing import ResponseReturnValue

from shared.services import sessions
from web.auth import current_sign_in
from web.extensions import services
from web.security import safe_next

View = Callable[..., Awaitable[ResponseReturnValue]]


async def recently_authenticated() -> bool:
    current = await current_sign_in()
    within = services().settings.REAUTHENTICATION_TIMEOUT
    return current is not None and sessions.is_recent(current.session, within)


def back_here() -> str:
    """Where to come back to after re-authenticating: this page, or for a form's POST, the
    page the form was on (its Referer, when it is this site's)."""
    if request.method == "GET":
        return request.full_path.rstrip("?")
    referrer = urlsplit(request.referrer or "")
    own = urlsplit(services().settings.base_url)
    if referrer.netloc in ("", own.netloc, request.host):
        path = referrer.path + (f"?{referrer.query}" if referrer.query else "")
        return safe_next(path, "/account")
    return "/account"


def to_reauthenticate(back: str | None = None) -> ResponseReturnValue:
    return redirect(url_for("reauthentication.reauthenticate", next=back or back_here()))


def fresh_authentication(view: View) -> View:
    """For a page whose form makes a sensitive change (under ``login_required``): back to
    this page afterwards (a form posts to its own page)."""

    @functools.wraps(view)
    async def run(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if not await recently_authenticated():
            # A form posts to its own page: back to that page, not the Referer.
            return to_reauthenticate(None if request.method == "GET" else request.path)
        return await view(*args, **kwargs)

    return run
