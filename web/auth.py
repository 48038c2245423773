"""Sessions: quart-auth's signed cookie carries the id of a server-side sign-in record
(``shared.services.sessions``). The record decides: a revoked or expired sign-in's cookie
stops working on its next request, whatever the browser keeps; quart-auth's own
``QUART_AUTH_DURATION`` is the outer bound.
"""

from __future__ import annotations

import re
import time
from typing import Any

from quart import after_this_request, request, session
from quart.typing import ResponseTypes
from quart_auth import Action, AuthUser, current_user, login_user, logout_user

from shared.models import User
from shared.services import sessions
from shared.services.sessions import Current
from shared.services.signin import DEVICE_COOKIE_MAX_AGE, Attempt
from web import ratelimit
from web.extensions import services

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
DEVICE_COOKIE = "device"
SECOND_STEP = "second_step"  # in the session cookie: a sign-in waiting for its second factor
LOGIN_CODE = "login_code"  # in the session cookie: this browser asked for an emailed code


class AccountUser(AuthUser):
    """quart-auth's user, resolved against the database once per request."""

    def __init__(self, auth_id: str | None, action: Action = Action.PASS) -> None:
        super().__init__(auth_id, action)
        self._resolved = False
        self._current: Current | None = None

    @property
    async def is_authenticated(self) -> bool:
        return await self.load() is not None

    async def load(self) -> Current | None:
        if not self._resolved:
            auth_id = self.auth_id
            if auth_id and SESSION_ID.match(auth_id):
                self._current = await sessions.resolve(services(), auth_id)
            self._resolved = True
        return self._current


async def current_sign_in() -> Current | None:
    """The signed-in account and its sign-in record, or None."""
    user = current_user._get_current_object()  # type: ignore[attr-defined]
    if isinstance(user, AccountUser):
        return await user.load()
    return None


async def current_account() -> User | None:
    """The logged-in user (a detached snapshot), or None."""
    current = await current_sign_in()
    return current.user if current is not None else None


async def start_session(
    session_id: str | None, *, remember: bool, device_cookie: str | None
) -> None:
    """Sign this browser in to the sign-in record a use case made (in the transaction that
    checked its factors): the session cookie names it, persistent if "remember me". The
    visitor's session cookie (and with it the CSRF token) starts afresh, so nothing planted
    before sign-in carries over; the device cookie marks this browser as one that has
    signed in here."""
    assert session_id is not None, "a completed sign-in has its record"
    settings = services().settings
    session.clear()
    login_user(AccountUser(session_id), remember=remember)
    if device_cookie is not None:

        @after_this_request
        async def keep_device(response: ResponseTypes) -> ResponseTypes:
            response.set_cookie(
                DEVICE_COOKIE,
                device_cookie,
                max_age=DEVICE_COOKIE_MAX_AGE,
                httponly=True,
                secure=settings.secure_cookies,
                samesite="Lax",
            )
            return response


async def continue_session(new_id: str | None) -> None:
    """The sign-in continues under a new id (a change of credentials rotated it): the cookie
    names the new id, with the lifetime the sign-in had."""
    current = await current_sign_in()
    if new_id is None or current is None:
        return
    record = current.session
    lifetime = (record.expires_at - record.created_at).total_seconds()
    remember = lifetime > services().settings.SESSION_LIFETIME
    login_user(AccountUser(new_id), remember=remember)


def remember_code_request(
    email: str, binding: str, *, remember: bool, next_url: str | None = None
) -> None:
    """This browser asked for an emailed sign-in code: what typing it, or following its
    link here, needs (the address, the binding, when it asked), in its signed cookie."""
    session[LOGIN_CODE] = {
        "email": email,
        "binding": binding,
        "remember": remember,
        "next": next_url,
        "at": int(time.time()),
    }


def code_request() -> dict[str, Any] | None:
    """What :func:`remember_code_request` kept, if this browser asked for a code."""
    state = session.get(LOGIN_CODE)
    if isinstance(state, dict) and isinstance(state.get("email"), str):
        return state
    return None


def code_request_expired(state: dict[str, Any]) -> bool:
    """Judged from the browser's own record of when it asked: the same for any address."""
    asked_at = state.get("at")
    max_age = services().settings.LOGIN_CODE_MAX_AGE
    return not isinstance(asked_at, int) or time.time() - asked_at >= max_age


def current_session_id() -> str | None:
    """The id of this request's sign-in (what a use case rotates or remembers)."""
    auth_id = current_user.auth_id
    return auth_id if auth_id and SESSION_ID.match(auth_id) else None


def sign_in_attempt(*, remember: bool, trust: bool = False) -> Attempt:
    """This request as a sign-in attempt: where it comes from, its browser, whether it asked
    to stay signed in and (on a second step) to remember this browser (the same for every
    way of signing in)."""
    return Attempt(
        client=ratelimit.client_address(),
        device_cookie=device_cookie(),
        user_agent=request.headers.get("User-Agent", ""),
        remember=remember,
        trust=trust,
    )


def device_cookie() -> str | None:
    return request.cookies.get(DEVICE_COOKIE)


async def end_session() -> None:
    """Sign out: the sign-in ends on the server too, so a copy of the cookie is useless."""
    auth_id = current_user.auth_id
    if auth_id and SESSION_ID.match(auth_id):
        await sessions.end(services(), auth_id)
    logout_user()
    session.clear()
