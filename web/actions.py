"""What a person can do, independent of how they ask: the HTML blueprints and the JSON API
both call these, so registration, login, tokens, rate limits, enumeration safety and the
outbox work the same way through either door. Each runs one unit of work (committed, then
its emails enqueued) and reports an outcome; presentation is the caller's business.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from quart import current_app
from quart_auth import current_user, login_user, logout_user

from shared import passwords
from shared.models import User
from shared.ratelimit import clear, hit, peek
from shared.services import accounts, reset
from shared.tokens import Purpose, int_field
from web.auth import AccountUser, make_auth_id, parse_auth_id
from web.extensions import resources, tokens, transaction

LOGIN_FAILURES = "login-failures"  # rate-limit name: failed logins per account
RESET_EMAILS = "reset-emails"  # rate-limit name: reset emails per address
HOUR = 3600


async def register(username: str, email: str, password: str) -> None:
    """Create the account (or, for a known address, queue a notice to its owner).

    Raises accounts.UsernameTaken. Otherwise the outcome is deliberately the same whether the
    address was new or not, to prevent account enumeration.
    """
    # Hash first: the answer takes as long whether or not the address has an account.
    password_hash = await passwords.hash_password(password)
    async with transaction() as session:
        await accounts.register_user(
            session,
            username=username,
            email=email,
            password_hash=password_hash,
            notice_interval=resources().settings.CONFIRM_RESEND_INTERVAL,
        )


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    user: User | None = None
    locked_for: int = 0  # seconds, when the account is temporarily locked


async def login(email: str, password: str, *, remember: bool) -> LoginOutcome:
    """Check the credentials and start a session.

    Failures are counted per address typed (known or not, so the lock reveals nothing). The
    lock is temporary, attempts during it are not counted, and a password reset lifts it, so
    an attacker cannot lock the owner out for good.
    """
    res = resources()
    settings = res.settings
    subject = accounts.email_key(email)
    limit = {"limit": settings.LOGIN_FAILURES_BEFORE_LOCK, "window": settings.LOGIN_LOCK_SECONDS}
    locked = await peek(res.queue, LOGIN_FAILURES, subject, **limit)
    if not locked.allowed:
        return LoginOutcome(locked_for=locked.retry_after)
    async with transaction() as session:
        user = await accounts.authenticate(session, email, password)
    if user is None:
        await hit(res.queue, LOGIN_FAILURES, subject, **limit)
        return LoginOutcome()
    await clear(res.queue, LOGIN_FAILURES, subject, window=limit["window"])
    lifetime = settings.REMEMBER_LIFETIME if remember else settings.SESSION_LIFETIME
    login_user(AccountUser(make_auth_id(user, lifetime=lifetime)), remember=remember)
    return LoginOutcome(user=user)


def logout() -> None:
    logout_user()


async def confirm(token: str) -> accounts.ConfirmOutcome:
    settings = resources().settings
    payload = tokens().loads(Purpose.CONFIRM_EMAIL, token, max_age=settings.CONFIRM_TOKEN_MAX_AGE)
    user_id = int_field(payload, "uid") if payload else None
    generation = int_field(payload, "gen") if payload else None
    if user_id is None or generation is None:
        return accounts.ConfirmOutcome.INVALID
    async with transaction() as session:
        return await accounts.confirm_email(session, user_id, generation)


class Resend(enum.Enum):
    SENT = "sent"
    ALREADY_CONFIRMED = "already confirmed"
    TOO_SOON = "too soon"


async def resend_confirmation(user_id: int) -> tuple[Resend, datetime | None]:
    """(outcome, when the next one may be asked for if TOO_SOON)."""
    settings = resources().settings
    async with transaction() as session:
        user = await session.get(User, user_id, with_for_update=True)
        if user is None or user.confirmed_at is not None:
            return Resend.ALREADY_CONFIRMED, None
        next_allowed = await accounts.resend_confirmation(
            session, user, interval=settings.CONFIRM_RESEND_INTERVAL
        )
    if next_allowed is not None:
        return Resend.TOO_SOON, next_allowed
    return Resend.SENT, None


def seconds_until(moment: datetime) -> int:
    return max(1, int((moment - datetime.now(UTC)).total_seconds()))


async def request_reset(email: str) -> None:
    """Queue a reset link if the address has an account and is within its hourly budget.

    Nothing observable differs between the cases, to prevent account enumeration, timing
    included: the request only counts the attempt (per address typed, known or not) and
    hands the rest to a background task, so known and unknown addresses answer in the same
    time. The task looks the account up and writes the outbox row in one transaction.
    """
    res = resources()
    verdict = await hit(
        res.queue,
        RESET_EMAILS,
        email.casefold(),
        limit=res.settings.RESET_EMAILS_PER_HOUR,
        window=HOUR,
    )
    if verdict.allowed:
        current_app.add_background_task(_issue_reset_if_known, email)


async def _issue_reset_if_known(email: str) -> None:
    async with transaction() as session:
        # Locked: two requests at once must not hand out the same link generation.
        user = await accounts.find_user_by_email(session, email, lock=True)
        if user is not None:
            await reset.issue_reset(session, user)


def _reset_payload(token: str) -> dict[str, object] | None:
    return tokens().loads(
        Purpose.RESET_PASSWORD, token, max_age=resources().settings.RESET_TOKEN_MAX_AGE
    )


async def reset_token_user(token: str) -> User | None:
    """The account a reset link is for, if the link is still good (not used, not superseded,
    not expired, not tampered with, and of the right purpose)."""
    res = resources()
    async with res.sessionmaker() as session:
        return await reset.user_for_reset_token(
            session, _reset_payload(token), res.settings.SECRET_KEY.get_secret_value()
        )


async def reset_password(token: str, password: str) -> bool:
    """Set a new password through a reset link; False if the link is no good (any reason)."""
    res = resources()
    secret = res.settings.SECRET_KEY.get_secret_value()
    payload = _reset_payload(token)
    if payload is None:
        return False  # forged or expired: no hashing for it (the account is checked below)
    password_hash = await passwords.hash_password(password)
    async with transaction() as session:
        # Locked and checked again: of two concurrent uses of one link, one wins.
        user = await reset.user_for_reset_token(session, payload, secret, lock=True)
        if user is None:
            return False
        await reset.set_password(session, user, password_hash)
    # A reset is the way out of a login lock.
    await clear(res.queue, LOGIN_FAILURES, user.email_key, window=res.settings.LOGIN_LOCK_SECONDS)
    return True


async def change_password(user: User, current_password: str, new_password: str) -> bool:
    """Change the logged-in ``user``'s password; False if the current password is wrong.
    Every other session ends; this one carries on with the lifetime it had."""
    res = resources()
    matches, _ = await passwords.verify_password(user.password_hash, current_password)
    if not matches:
        return False
    password_hash = await passwords.hash_password(new_password)
    async with transaction() as session:
        locked = await session.get(User, user.id, with_for_update=True)
        assert locked is not None
        await reset.set_password(session, locked, password_hash)
    parsed = parse_auth_id(current_user.auth_id)
    remaining = parsed[2] - int(time.time()) if parsed else res.settings.SESSION_LIFETIME
    login_user(
        AccountUser(make_auth_id(locked, lifetime=max(60, remaining))),
        remember=remaining > res.settings.SESSION_LIFETIME,
    )
    return True


async def disown_change(token: str) -> bool:
    """ "This wasn't me": end every session of the account and email a fresh reset link."""
    settings = resources().settings
    payload = tokens().loads(Purpose.NOT_ME, token, max_age=settings.NOT_ME_TOKEN_MAX_AGE)
    user_id = int_field(payload, "uid") if payload else None
    version = int_field(payload, "sv") if payload else None
    if user_id is None or version is None:
        return False
    async with transaction() as session:
        user = await session.get(User, user_id, with_for_update=True)
        if user is None or user.session_version != version:
            return False
        await reset.disown_change(session, user)
    logout_user()
    return True
