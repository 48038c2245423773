"""Signing in and out, and resolving a session cookie to its account.

Brute force is held off by limits counted *before* the password is checked (so no number of
simultaneous guesses gets more than the limit through), scoped so that a stranger cannot
lock the owner out (see README, "Sign-in limits"):

* a **trusted device** (a browser holding a device cookie from an earlier sign-in to this
  account) has a lock of its own;
* any other client is limited per (account, client address), and all such clients of one
  account together by an account-wide ceiling, which does not apply to trusted devices.

A password reset lifts the account-wide ceiling and the lock of the client that resets.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared import assurance, passwords
from shared.assurance import Method
from shared.devices import device_name
from shared.group_commit import Together
from shared.jobs import NewDevice
from shared.models import User
from shared.outbox import email_user
from shared.ratelimit import Limit
from shared.services import accounts, events, second_step, sessions, trusted_browsers, users
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.tokens import Purpose, int_field
from shared.validation import email_key

DEVICE_COOKIE_MAX_AGE = 365 * 24 * 3600
RECENT_DEVICE = 90 * 24 * 3600  # a browser unseen for longer is "new" again
NEW_DEVICE_NOTICE_EVERY = 15 * 60  # seconds: at most one new-device email per account


def client_limit(ctx: ServiceContext) -> Limit:
    settings = ctx.settings
    return Limit("login-client", settings.LOGIN_FAILURES_BEFORE_LOCK, settings.LOGIN_LOCK_SECONDS)


def device_limit(ctx: ServiceContext) -> Limit:
    settings = ctx.settings
    return Limit("login-device", settings.LOGIN_FAILURES_BEFORE_LOCK, settings.LOGIN_LOCK_SECONDS)


def account_limit(ctx: ServiceContext) -> Limit:
    settings = ctx.settings
    return Limit("login-account", settings.LOGIN_ACCOUNT_CEILING, settings.LOGIN_ACCOUNT_WINDOW)


@dataclass(frozen=True, slots=True)
class Attempt:
    """Where a sign-in attempt comes from, the same on every path (password, second step,
    passkey, and the next ones): the client's address (its limits), the browser's device
    cookie (trusted browsers, new-browser emails), its user agent (the record's "Firefox on
    Windows"), and whether it asked to be remembered (the record's lifetime)."""

    client: str
    device_cookie: str | None = None
    user_agent: str = ""
    remember: bool = False
    trust: bool = False  # "remember this browser": asked on a second step


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    user: User | None = None
    locked_for: int = 0  # seconds, when this client may not try again yet
    device_cookie: str | None = None  # on success: the browser's device cookie, to keep
    second_step: str | None = None  # password right, two-factor on: the pending state
    session_id: str | None = None  # on success: the sign-in record, for the session cookie


@dataclass(frozen=True, slots=True)
class Concluded:
    """What the assurance rule made of factors that were right: a sign-in (its record's id,
    and the browser's device cookie to keep), or a second step still to take (its token)."""

    session_id: str | None = None
    device_cookie: str | None = None
    second_step: str | None = None


def needs_second_factor(user: User) -> bool:
    """Whether the account has a second factor enrolled (an authenticator app, with its
    recovery codes), and so needs two factors on every path."""
    return user.totp_enabled_at is not None


async def conclude(
    session: AsyncSession,
    ctx: ServiceContext,
    user: User,
    attempt: Attempt,
    *,
    method: str,
    methods: Sequence[Method],
) -> Concluded:
    """The one assurance rule, which every way of signing in ends with (password, emailed
    code or link, passkey, a second step; the identity-provider paths too), in the
    transaction that checked ``methods``: an account with a second factor needs two
    different ones (:func:`shared.assurance.is_multi_factor`), unless this browser is one
    its owner asked to remember; otherwise the second step follows. A sign-in that showed
    two factors from a browser asking to be remembered (``attempt.trust``) is trusted."""
    browser = device_id(ctx, attempt.device_cookie)
    two = assurance.is_multi_factor(methods)
    remembered = False
    if needs_second_factor(user) and not two:
        remembered = await trusted_browsers.trusts(session, user.id, browser)
        if not remembered:
            return Concluded(second_step=second_step.token(ctx, user, user.email_key, methods))
    session_id = await record_sign_in(
        session, ctx, user, attempt, method=method, methods=methods, remembered=remembered
    )
    browser = browser or secrets.token_urlsafe(12)  # a browser's first sign-in: its id
    if attempt.trust and two and needs_second_factor(user):
        await trusted_browsers.trust(
            session, ctx, user, browser, client=attempt.client, user_agent=attempt.user_agent
        )
    cookie = new_device_cookie(ctx, user.email_key, user.id, keep=browser)
    return Concluded(session_id=session_id, device_cookie=cookie)


def known_browser(
    ctx: ServiceContext, key: str, device_cookie: str | None, *, user_id: int | None = None
) -> str | None:
    """The browser's id if its device cookie says it signed in to this address's account
    (with ``user_id``: to that very account), else None."""
    payload = ctx.tokens.loads(Purpose.DEVICE, device_cookie or "", max_age=DEVICE_COOKIE_MAX_AGE)
    if (
        payload is not None
        and payload.get("key") == key
        and isinstance(payload.get("id"), str)
        and (user_id is None or int_field(payload, "uid") == user_id)
    ):
        return str(payload["id"])
    return None


def scopes_for(
    ctx: ServiceContext,
    key: str,
    *,
    client: str,
    device_cookie: str | None,
    user_id: int | None = None,
) -> list[tuple[Limit, str]]:
    """The limits one attempt counts against: the device's own, or the client's and the
    account-wide ceiling. With ``user_id``, the device cookie must be that account's (not
    only of its address: an account deleted and registered again is another account)."""
    browser = known_browser(ctx, key, device_cookie, user_id=user_id)
    if browser is not None:
        return [(device_limit(ctx), f"{key} {browser}")]
    return [(client_limit(ctx), f"{key} {client}"), (account_limit(ctx), key)]


async def login(ctx: ServiceContext, email: str, password: str, attempt: Attempt) -> LoginOutcome:
    """Check the credentials; when ``user`` is set, the sign-in is recorded (``session_id``,
    for the session cookie, living as long as ``remember`` chose).

    Every attempt is counted before the password is checked, for unknown addresses too (so
    the limits reveal nothing). Unknown addresses, wrong passwords and accounts whose
    address is not confirmed yet all get the same answer, in about the same time; for the
    last, when the password was right, a fresh confirmation link is emailed afterwards.

    A sign-in from a browser that has not signed in to this account within
    RECENT_DEVICE (no device cookie for it, or an old one) emails the owner, except the
    account's very first sign-in; at most one such email per NEW_DEVICE_NOTICE_EVERY.
    """
    key = email_key(email)
    scopes = scopes_for(ctx, key, client=attempt.client, device_cookie=attempt.device_cookie)
    for limit, subject in scopes:
        verdict = await ctx.limits.hit(limit, subject)
        if not verdict.allowed:
            ctx.defer(_record_if_known, ctx, email, Kind.LOCKED)
            return LoginOutcome(locked_for=verdict.retry_after)
    async with ctx.unit_of_work() as session:
        user = await users.by_email(session, email)
        if user is None:
            await passwords.verify_dummy(password)
            return LoginOutcome()
        if (
            len(scopes) == 1
            and scopes_for(
                ctx,
                key,
                client=attempt.client,
                device_cookie=attempt.device_cookie,
                user_id=user.id,
            )
            != scopes
        ):
            # A device cookie of the address's former account: counted as any stranger.
            scopes = scopes_for(ctx, key, client=attempt.client, device_cookie=None)
            for limit, subject in scopes:
                verdict = await ctx.limits.hit(limit, subject)
                if not verdict.allowed:
                    return LoginOutcome(locked_for=verdict.retry_after)
        matches, needs_rehash = await passwords.verify_password(user.password_hash, password)
        if not matches:
            # After the answer: an insert for known accounts only must not cost answer time.
            ctx.defer(events.record_alone, ctx, Kind.LOGIN_FAILED, user.id)
            return LoginOutcome()
        if needs_rehash:
            user.password_hash = await passwords.hash_password(password)
        concluded = Concluded()
        if user.confirmed_at is not None:
            concluded = await conclude(
                session, ctx, user, attempt, method="password", methods=[Method.PASSWORD]
            )
    if user.confirmed_at is None:
        # Signing in needs a confirmed address: registering an address and signing in with it
        # must not tell a stranger whether the address already had an account.
        ctx.defer(accounts.resend_confirmation, ctx, user.id)
        return LoginOutcome()
    if concluded.second_step is not None:
        # The password was right; nothing works until the second step is, too.
        return LoginOutcome(second_step=concluded.second_step)
    await ctx.limits.clear(scopes[0][0], scopes[0][1])
    return LoginOutcome(
        user=user, device_cookie=concluded.device_cookie, session_id=concluded.session_id
    )


async def _record_if_known(ctx: ServiceContext, email: str, kind: Kind) -> None:
    """Held-back attempts are the account's news only if there is an account: unknown
    addresses leave nothing stored (no enumeration through storage). A flood of them
    against one account is written a batch at a time, in two statements."""
    attempt = _Attempt(email_key(email), kind, events.current_origin())
    await ctx.commit_together(Together(_record_for_known, attempt))


@dataclass(frozen=True, slots=True)
class _Attempt:
    key: str  # the address's key
    kind: Kind
    origin: events.Origin


async def _record_for_known(session: AsyncSession, attempts: list[_Attempt]) -> None:
    accounts = await users.ids_by_email_key(session, {attempt.key for attempt in attempts})
    await events.record_many(
        session,
        [
            events.Event(attempt.kind, accounts[attempt.key], attempt.origin, {})
            for attempt in attempts
            if attempt.key in accounts
        ],
    )


def new_device_cookie(ctx: ServiceContext, key: str, user_id: int, *, keep: str | None) -> str:
    """The browser's mark of having signed in to this account: bound to the account itself
    (``uid``), not only its address, so that after a deletion the next account of the same
    address does not inherit the old one's browsers. The browser keeps its id (``keep``,
    from the cookie it had): the id is what a trusted browser is remembered by."""
    payload = {"key": key, "uid": user_id, "id": keep or secrets.token_urlsafe(12)}
    return ctx.tokens.dumps(Purpose.DEVICE, payload)


def device_id(ctx: ServiceContext, device_cookie: str | None) -> str | None:
    """The browser's id, from its signed device cookie (whichever account it last signed in
    to), or None without a valid one."""
    payload = ctx.tokens.loads(Purpose.DEVICE, device_cookie or "", max_age=DEVICE_COOKIE_MAX_AGE)
    browser = payload.get("id") if payload is not None else None
    return browser if isinstance(browser, str) and 0 < len(browser) <= 32 else None


async def record_sign_in(
    session: AsyncSession,
    ctx: ServiceContext,
    user: User,
    attempt: Attempt,
    *,
    method: str,
    methods: Sequence[Method],
    remembered: bool = False,
) -> str:
    """A sign-in completed (every factor checked), in one transaction: its record (living as
    long as "remember me" chose, with the methods that made it; its id, returned, goes in
    the session cookie), its event, and the new-browser email it may cause. Nothing of it
    without the rest. ``method`` names the last step in words the event has always used
    ("password", "passkey", "totp", "recovery"); ``methods`` is every step, in RFC 8176
    terms (shared.assurance); ``remembered``: one factor was enough, from a trusted browser."""
    settings = ctx.settings
    first = user.last_sign_in_at is None
    user.last_sign_in_at = datetime.now(UTC)
    session_id = await sessions.add(
        session,
        user,
        lifetime=settings.REMEMBER_LIFETIME if attempt.remember else settings.SESSION_LIFETIME,
        client=attempt.client,
        user_agent=attempt.user_agent,
        methods=methods,
    )
    amr = [str(m) for m in methods]
    facts = {"trusted_browser": True} if remembered else {}
    await events.record(session, Kind.LOGIN_SUCCEEDED, user.id, method=method, amr=amr, **facts)
    if not first and not _recent_device(ctx, user, attempt.device_cookie):
        await _notify_new_device(
            session, ctx, user, client=attempt.client, user_agent=attempt.user_agent
        )
    return session_id


def _recent_device(ctx: ServiceContext, user: User, device_cookie: str | None) -> bool:
    """Whether this browser signed in to this account within RECENT_DEVICE (each sign-in
    renews its device cookie)."""
    payload = ctx.tokens.loads(Purpose.DEVICE, device_cookie or "", max_age=RECENT_DEVICE)
    return (
        payload is not None
        and payload.get("key") == user.email_key
        and int_field(payload, "uid") == user.id
    )


async def _notify_new_device(
    session: AsyncSession, ctx: ServiceContext, user: User, *, client: str, user_agent: str
) -> None:
    verdict = await ctx.limits.hit(new_device_limit(), str(user.id))
    if not verdict.allowed:
        return  # a flood of sign-ins is one email
    context = NewDevice(
        user_id=user.id,
        session_version=user.session_version,
        signed_in_at=datetime.now(UTC).isoformat(timespec="seconds"),
        device=await device_name(user_agent),
        client_address=client[:64],
    )
    await email_user(session, user, context)


def new_device_limit() -> Limit:
    return Limit("new-device-notice", 1, NEW_DEVICE_NOTICE_EVERY)


async def lift_locks(ctx: ServiceContext, user: User, *, client: str | None) -> None:
    """What a password reset does for sign-in: the account-wide ceiling is lifted, and so is
    the lock of the client that reset the password."""
    await ctx.limits.clear(account_limit(ctx), user.email_key)
    if client is not None:
        await ctx.limits.clear(client_limit(ctx), f"{user.email_key} {client}")
