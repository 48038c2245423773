"""Sessions: quart-auth's signed cookie carries ``"<user id>:<session version>:<expiry>"``.

* The session version is checked against the database on every request, so bumping it (a
  password change or reset) ends every session that carries the old value.
* The expiry is part of the signed value, so the server refuses a session past its lifetime
  (12 h without "remember me", 30 days with it) whatever the browser does with the cookie;
  quart-auth's own ``QUART_AUTH_DURATION`` is the outer bound.
"""

from __future__ import annotations

import time

from quart import after_this_request, request, session
from quart.typing import ResponseTypes
from quart_auth import Action, AuthUser, current_user, login_user, logout_user

from shared.models import User
from shared.services import signin
from shared.services.signin import DEVICE_COOKIE_MAX_AGE
from web.extensions import services


def make_auth_id(user: User, *, lifetime: int) -> str:
    return f"{user.id}:{user.session_version}:{int(time.time()) + lifetime}"


def parse_auth_id(auth_id: str | None) -> tuple[int, int, int] | None:
    if not auth_id:
        return None
    parts = auth_id.split(":")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    user_id, version, expires = (int(part) for part in parts)
    return user_id, version, expires


class AccountUser(AuthUser):
    """quart-auth's user, resolved against the database once per request."""

    def __init__(self, auth_id: str | None, action: Action = Action.PASS) -> None:
        super().__init__(auth_id, action)
        self._resolved = False
        self._user: User | None = None

    @property
    async def is_authenticated(self) -> bool:
        return await self.load() is not None

    async def load(self) -> User | None:
        if not self._resolved:
            self._user = await self._resolve()
            self._resolved = True
        return self._user

    async def _resolve(self) -> User | None:
        parsed = parse_auth_id(self.auth_id)
        if parsed is None:
            return None
        user_id, version, expires = parsed
        if expires < time.time():
            return None
        return await signin.session_user(services(), user_id, version)


async def current_account() -> User | None:
    """The logged-in user (a detached snapshot), or None."""
    user = current_user._get_current_object()  # type: ignore[attr-defined]
    if isinstance(user, AccountUser):
        return await user.load()
    return None


DEVICE_COOKIE = "device"


def start_session(user: User, *, remember: bool, device_cookie: str | None) -> None:
    """Sign ``user`` in on this browser: the cookie names the account's current session
    version, and expires with the lifetime "remember me" chose. The visitor's session
    cookie (and with it the CSRF token) starts afresh, so nothing planted before sign-in
    carries over; the device cookie marks this browser as one that has signed in here."""
    settings = services().settings
    session.clear()
    lifetime = settings.REMEMBER_LIFETIME if remember else settings.SESSION_LIFETIME
    login_user(AccountUser(make_auth_id(user, lifetime=lifetime)), remember=remember)
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


def device_cookie() -> str | None:
    return request.cookies.get(DEVICE_COOKIE)


def renew_session(user: User) -> None:
    """After a change that ended every session (a password change), carry on the one that
    asked, with the lifetime it had left."""
    settings = services().settings
    parsed = parse_auth_id(current_user.auth_id)
    remaining = parsed[2] - int(time.time()) if parsed else settings.SESSION_LIFETIME
    login_user(
        AccountUser(make_auth_id(user, lifetime=max(60, remaining))),
        remember=remaining > settings.SESSION_LIFETIME,
    )


async def end_session() -> None:
    """Sign out: the session ends on the server too, so a copy of the cookie is useless."""
    parsed = parse_auth_id(current_user.auth_id)
    if parsed is not None:
        await signin.logout(services(), parsed[0], parsed[1])
    logout_user()
    session.clear()
