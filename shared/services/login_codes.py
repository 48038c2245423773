"""Signing in with a code sent by email (and the link beside it).

Asking for a code answers the same, in the same time, for any address: the request is counted
(per address, LOGIN_CODES_PER_HOUR) and the rest is deferred past the answer, as for reset
links. For an address with an account, the deferred part makes a new code (its generation
moves on, so the newest code is the only one that works) and queues it as a priority email.

The code is derived (:func:`shared.tokens.login_code`), never stored; the row keeps what
derives it, when it was asked for, and a digest of a secret the asking browser keeps (its
*binding*). The emailed link signs in at once only in that browser; opened anywhere else it
asks for the code. A code works once, for LOGIN_CODE_MAX_AGE, and takes at most
LOGIN_CODE_MAX_ATTEMPTS tries (counted per address before each check, whether the address
has an account or not, so running out tells nothing); then a new one is needed. Tries count
toward the sign-in limits as wrong passwords do.

A right code proves the address: an unconfirmed account becomes confirmed. What it signs in
to is decided by the one assurance rule (:func:`shared.services.signin.conclude`): an email
code is one factor (``email``), so an account with a second factor takes its second step.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.assurance import Method
from shared.i18n import N_
from shared.jobs import EmailKind, ReauthenticationCode
from shared.jobs import LoginCode as LoginCodeEmail
from shared.models import LoginCode, User
from shared.outbox import add_email
from shared.ratelimit import Limit
from shared.services import accounts, events, reauthentication, signin, users
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.services.refusals import CodeSpent, Locked, WrongCode
from shared.tokens import LoginCodeLink, login_code
from shared.validation import email_key

HOUR = 3600
WRONG = N_("That code is not right. Use the newest code we emailed you, within its time.")


def tries_limit(ctx: ServiceContext) -> Limit:
    """Tries of one address's code: a new code (a request) starts the count again."""
    settings = ctx.settings
    return Limit("login-code-tries", settings.LOGIN_CODE_MAX_ATTEMPTS, settings.LOGIN_CODE_MAX_AGE)


def emails_limit(ctx: ServiceContext, scope: str = "address") -> Limit:
    """Code emails per address, or per browser that has signed in to it before."""
    name = "login-code-emails" if scope == "address" else f"login-code-emails-{scope}"
    return Limit(name, ctx.settings.LOGIN_CODES_PER_HOUR, HOUR)


async def request(
    ctx: ServiceContext,
    email: str,
    *,
    device_cookie: str | None = None,
    to_reauthenticate: bool = False,
) -> str:
    """Ask for a code for ``email``; returns the binding for the asking browser to keep (a
    random secret, the same kind of answer for any address). Counted first: per address,
    or, from a browser that has signed in to this address's account before (its device
    cookie), per that browser, so that strangers spending the address's budget cannot keep
    its owner out (an account without a password signs in by code). ``to_reauthenticate``:
    the email says it is to confirm it is you, not to sign in."""
    key = email_key(email)
    binding = secrets.token_urlsafe(24)
    browser = signin.known_browser(ctx, key, device_cookie)
    if browser is not None:
        verdict = await ctx.limits.hit(emails_limit(ctx, "device"), f"{key} {browser}")
    else:
        verdict = await ctx.limits.hit(emails_limit(ctx), key)
    if verdict.allowed:
        await ctx.limits.clear(tries_limit(ctx), key)
        ctx.defer(_issue_if_known, ctx, email, binding, to_reauthenticate)
    return binding


async def _issue_if_known(
    ctx: ServiceContext, email: str, binding: str, to_reauthenticate: bool
) -> None:
    async with ctx.unit_of_work() as session:
        user = await users.by_email(session, email, lock=True)
        if user is None:
            return  # an unknown address leaves nothing stored
        await issue(session, user.id, user.email, binding, to_reauthenticate=to_reauthenticate)


async def register(ctx: ServiceContext, username: str, email: str) -> str:
    """Sign up without a password: the account is made as any other (the same answers, in
    the same time, for a known address), and its address is proven by a sign-in code bound
    to this browser instead of a confirmation link; the binding is returned to keep. Signing
    in with the code confirms the account."""
    binding = secrets.token_urlsafe(24)
    await accounts.register(
        ctx, username, email, None, prove=functools.partial(issue, binding=binding)
    )
    return binding


async def issue(
    session: AsyncSession,
    user_id: int,
    email: str,
    binding: str,
    *,
    to_reauthenticate: bool = False,
) -> None:
    """A new code for the account, in the caller's transaction: queued as a priority email,
    recorded as an event (what registering without a password does too)."""
    generation = await users.new_login_code(session, user_id, binding)
    if to_reauthenticate:
        context: LoginCodeEmail = ReauthenticationCode(user_id=user_id, generation=generation)
        kind = EmailKind.REAUTHENTICATION_CODE
    else:
        context, kind = LoginCodeEmail(user_id=user_id, generation=generation), EmailKind.LOGIN_CODE
    await add_email(session, kind, email, context, user_id=user_id)
    await events.record(session, Kind.LOGIN_CODE_REQUESTED, user_id)


@dataclass(frozen=True, slots=True)
class Result:
    """A right code or link: signed in (``session_id``, ``device_cookie``), or, on an account
    with a second factor, its second step to take (``second_step``)."""

    user: User
    session_id: str | None = None
    device_cookie: str | None = None
    second_step: str | None = None
    password_dropped: bool = False  # an unconfirmed account's password, dropped (above)


async def with_code(ctx: ServiceContext, email: str, code: str, attempt: signin.Attempt) -> Result:
    """Sign in with the code emailed to ``email`` (typed in the browser that asked)."""
    return await _use(ctx, email_key(email), attempt, _sign_in, code=code)


async def with_link_and_code(
    ctx: ServiceContext, token: str, code: str, attempt: signin.Attempt
) -> Result:
    """Sign in with the code, in a browser that opened the link but did not ask: the link
    names the account and the code proves the rest."""
    link, key = await _account_of(ctx, token)
    return await _use(ctx, key, attempt, _sign_in, code=code, generation=link.generation)


async def request_for_account(
    ctx: ServiceContext, user_id: int, *, device_cookie: str | None = None
) -> None:
    """A code to re-authenticate with, to the signed-in account's own address."""
    async with ctx.reading() as session:
        user = await users.by_id(session, user_id)
    if user is not None:
        await request(ctx, user.email, device_cookie=device_cookie, to_reauthenticate=True)


async def reauthenticate(
    ctx: ServiceContext, user_id: int, sign_in: str | None, code: str, attempt: signin.Attempt
) -> None:
    """Re-authenticate sign-in ``sign_in`` with the code emailed to its account's address."""
    async with ctx.reading() as session:
        user = await users.by_id(session, user_id)
    if user is None:
        raise WrongCode(WRONG)

    async def renew(session: AsyncSession, ctx: ServiceContext, found: User, _: Any) -> None:
        if found.id != user_id:
            raise WrongCode(WRONG)
        await reauthentication.renew(session, found, sign_in, "email_code")

    await _use(ctx, user.email_key, attempt, renew, code=code)


async def with_link(
    ctx: ServiceContext, token: str, binding: str, attempt: signin.Attempt
) -> Result | None:
    """Sign in by following the link, in the browser that asked for it (``binding``: the
    secret :func:`request` handed it); None if this is not that browser (or the link is no
    good any more): then the code is asked for."""
    link = _link(ctx, token)
    if link is None or not binding:
        return None
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, link.user_id, lock=True)
        held = await _held(session, user)
        if (
            user is None
            or held is None
            or held.generation != link.generation
            or not hmac.compare_digest(held.browser, users.binding_digest(binding))
            or _expired(ctx, held)
        ):
            return None
        await session.execute(delete(LoginCode).where(LoginCode.user_id == user.id))
        result = await _signed_in(session, ctx, user, attempt, method="email_link")
    await _forget_counts(ctx, user.email_key, attempt)
    return result


def link_works(ctx: ServiceContext, token: str) -> bool:
    """Whether a link is one of ours and fresh (the page that asks for its code says so)."""
    return _link(ctx, token) is not None


def _link(ctx: ServiceContext, token: str) -> LoginCodeLink | None:
    return ctx.tokens.read(LoginCodeLink, token, max_age=ctx.settings.LOGIN_CODE_MAX_AGE)


async def _account_of(ctx: ServiceContext, token: str) -> tuple[LoginCodeLink, str]:
    link = _link(ctx, token)
    if link is None:
        raise WrongCode(WRONG)
    async with ctx.reading() as session:
        user = await users.by_id(session, link.user_id)
    if user is None:
        raise WrongCode(WRONG)
    return link, user.email_key


T = TypeVar("T")
Then = Callable[[AsyncSession, ServiceContext, User, signin.Attempt], Awaitable[T]]


async def _use(
    ctx: ServiceContext,
    key: str,
    attempt: signin.Attempt,
    then: Then[T],
    *,
    code: str,
    generation: int | None = None,
) -> T:
    """Count the try (this address's code tries, and the sign-in limits of this client or
    browser), then check it: the same steps, and answers, whether the address has an
    account or not. A right code is used up, and ``then`` runs in its transaction."""
    scopes = signin.scopes_for(ctx, key, client=attempt.client, device_cookie=attempt.device_cookie)
    tries = await ctx.limits.hit(tries_limit(ctx), key)
    if not tries.allowed:
        raise CodeSpent(tries.retry_after)
    verdict = await ctx.limits.hit_all(*scopes)
    if not verdict.allowed:
        raise Locked(verdict.retry_after)
    typed = "".join(ch for ch in code if ch.isdigit())
    async with ctx.unit_of_work() as session:
        user = await session.scalar(select(User).where(User.email_key == key).with_for_update())
        held = await _held(session, user)
        expected = (
            login_code(ctx.secret, held.user_id, held.generation, held.salt)
            if held is not None
            else login_code(ctx.secret, 0, 0, "")  # the same work for an unknown address
        )
        right = hmac.compare_digest(expected, typed)
        if (
            user is None
            or held is None
            or not right
            or _expired(ctx, held)
            or (generation is not None and held.generation != generation)
        ):
            if user is not None:
                ctx.defer(events.record_alone, ctx, Kind.LOGIN_FAILED, user.id, step="email code")
            raise WrongCode(WRONG)
        await session.execute(delete(LoginCode).where(LoginCode.user_id == user.id))
        result = await then(session, ctx, user, attempt)
    await _forget_counts(ctx, key, attempt)
    return result


async def _held(session: AsyncSession, user: User | None) -> LoginCode | None:
    if user is None:
        return None
    return await session.get(LoginCode, user.id)


def _expired(ctx: ServiceContext, held: LoginCode) -> bool:
    age = datetime.now(UTC) - held.created_at
    return age >= timedelta(seconds=ctx.settings.LOGIN_CODE_MAX_AGE)


async def _sign_in(
    session: AsyncSession, ctx: ServiceContext, user: User, attempt: signin.Attempt
) -> Result:
    return await _signed_in(session, ctx, user, attempt, method="email_code")


async def _signed_in(
    session: AsyncSession, ctx: ServiceContext, user: User, attempt: signin.Attempt, *, method: str
) -> Result:
    """The code (or link) was right and is used up: the address is proven, and the
    assurance rule decides the rest; in the caller's transaction, under its row lock.

    Proving the address of an unconfirmed account drops the password it was registered
    with: whoever registered an address they did not hold (to take over the account its
    owner would make later: "pre-hijacking") must not keep a way in once the owner signs in
    with the address. The page says so; the owner sets one in a click if they want one."""
    dropped = False
    if user.confirmed_at is None:
        user.confirmed_at = datetime.now(UTC)
        await events.record(session, Kind.CONFIRMED, user.id, by="email code")
        if passwords.is_usable(user.password_hash):
            user.password_hash = passwords.UNUSABLE_PREFIX + secrets.token_urlsafe(24)
            dropped = True
            why = "set before the address was proven"
            await events.record(session, Kind.PASSWORD_REMOVED, user.id, why=why)
    concluded = await signin.conclude(
        session, ctx, user, attempt, method=method, methods=[Method.EMAIL]
    )
    return Result(
        user=user,
        session_id=concluded.session_id,
        device_cookie=concluded.device_cookie,
        second_step=concluded.second_step,
        password_dropped=dropped,
    )


async def _forget_counts(ctx: ServiceContext, key: str, attempt: signin.Attempt) -> None:
    await ctx.limits.clear(tries_limit(ctx), key)
    scopes = signin.scopes_for(ctx, key, client=attempt.client, device_cookie=attempt.device_cookie)
    await ctx.limits.clear(*scopes[0])
