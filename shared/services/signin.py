"""Signing in and out, and resolving a session cookie to its account."""

from __future__ import annotations

from dataclasses import dataclass

from shared import passwords
from shared.models import User
from shared.ratelimit import clear, hit, peek
from shared.services import users
from shared.services.context import ServiceContext
from shared.validation import email_key

LOGIN_FAILURES = "login-failures"  # rate-limit name: failed logins per account


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    user: User | None = None
    locked_for: int = 0  # seconds, when the account is temporarily locked


async def login(ctx: ServiceContext, email: str, password: str) -> LoginOutcome:
    """Check the credentials. The caller starts the session when ``user`` is set.

    Failures are counted per address typed (known or not, so the lock reveals nothing). The
    lock is temporary, attempts during it are not counted, and a password reset lifts it, so
    an attacker cannot lock the owner out for good. Unknown addresses and wrong passwords
    get the same answer in about the same time.
    """
    settings = ctx.settings
    subject = email_key(email)
    limit = {"limit": settings.LOGIN_FAILURES_BEFORE_LOCK, "window": settings.LOGIN_LOCK_SECONDS}
    locked = await peek(ctx.redis, LOGIN_FAILURES, subject, **limit)
    if not locked.allowed:
        return LoginOutcome(locked_for=locked.retry_after)
    async with ctx.unit_of_work() as session:
        user = await users.by_email(session, email)
        if user is None:
            await passwords.verify_dummy(password)
        else:
            matches, needs_rehash = await passwords.verify_password(user.password_hash, password)
            if not matches:
                user = None
            elif needs_rehash:
                user.password_hash = await passwords.hash_password(password)
    if user is None:
        await hit(ctx.redis, LOGIN_FAILURES, subject, **limit)
        return LoginOutcome()
    await clear(ctx.redis, LOGIN_FAILURES, subject, window=limit["window"])
    return LoginOutcome(user=user)


async def lift_lock(ctx: ServiceContext, user: User) -> None:
    """A password reset is the way out of a login lock."""
    await clear(ctx.redis, LOGIN_FAILURES, user.email_key, window=ctx.settings.LOGIN_LOCK_SECONDS)


async def session_user(ctx: ServiceContext, user_id: int, session_version: int) -> User | None:
    """The account a session cookie names, if that session has not been ended (a password
    change, a reset or "this wasn't me" bump the account's session version)."""
    async with ctx.reading() as session:
        user = await users.by_id(session, user_id)
    if user is None or user.session_version != session_version:
        return None
    return user
