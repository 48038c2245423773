"""A fresh proof of who you are: what every sensitive change asks for, on every path (pages
and API alike), so that a stolen session cookie alone cannot change the password or the
address, add a passkey, turn two-factor on or off, export or delete the account.

The proof is the sign-in itself when its person authenticated within
REAUTHENTICATION_TIMEOUT ("sudo mode": signing in, or re-authenticating on
``/account/reauthenticate`` with any of the account's methods, :mod:`.reauthentication`).
Otherwise :class:`ReauthenticationRequired` is raised: the pages send the person to
re-authenticate and back, the API answers 401. An API client may instead send the password,
or on a two-factor account a current authenticator or recovery code, with the request itself.
Each such check is counted before it is made (one per-account limit for every check), so a
stolen session is no oracle for either. :func:`proven` is the prologue the operations share:
check the proof, lock the account's row; the operation runs in the transaction it opens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.i18n import N_
from shared.models import User
from shared.ratelimit import Limit
from shared.services import factors, sessions, users
from shared.services.context import ServiceContext
from shared.services.refusals import (
    Locked,
    NotApplicable,
    ReauthenticationRequired,
    WrongCode,
    WrongPassword,
)
from shared.validation import InvalidInput


@dataclass(frozen=True, slots=True)
class Proof:
    """What shows it is the account's person, now: the asking sign-in (``sign_in``, its
    secret id), if recent enough; or what they typed with the request (a password, a
    code)."""

    sign_in: str | None = None
    password: str = ""
    code: str = ""
    field: str = "password"  # where a wrong password is shown ("current_password")

    @property
    def typed(self) -> bool:
        return bool(self.password or self.code)


def limit(ctx: ServiceContext) -> Limit:
    """Password and code checks per account, counted before each: a stolen session must not
    become an unlimited password (or code) oracle."""
    settings = ctx.settings
    return Limit("password-check", settings.LOGIN_FAILURES_BEFORE_LOCK, settings.LOGIN_LOCK_SECONDS)


async def count(ctx: ServiceContext, user_id: int) -> None:
    """Count one check; :class:`Locked` when the account's are spent."""
    verdict = await ctx.limits.hit(limit(ctx), str(user_id))
    if not verdict.allowed:
        raise Locked(verdict.retry_after)


async def forget(ctx: ServiceContext, user_id: int) -> None:
    """A check passed: the count starts again."""
    await ctx.limits.clear(limit(ctx), str(user_id))


async def check_typed(
    session: AsyncSession, ctx: ServiceContext, user: User, offered: Proof
) -> str:
    """Return the method if what ``offered`` holds proves it is ``user`` (whose row the
    caller holds locked): "password", or "totp"/"recovery"; raise :class:`WrongPassword` or
    :class:`WrongCode` if not."""
    if offered.password:
        matches, _ = await passwords.verify_password(user.password_hash, offered.password)
        if not matches:
            raise WrongPassword(offered.field)
        return "password"
    if offered.code and user.totp_enabled_at is not None:
        method = await factors.check_code(session, ctx, user, offered.code)
        if method is None:
            raise WrongCode
        return method
    raise InvalidInput(offered.field, N_("Enter your password to confirm it is you."))


@asynccontextmanager
async def proven(
    ctx: ServiceContext, user_id: int, offered: Proof
) -> AsyncIterator[tuple[AsyncSession, User]]:
    """``async with proven(ctx, user_id, offered) as (session, user)``: the proof checked
    (typed ones counted first), the account's row locked, in the unit of work the operation
    then runs in (a refusal raised in it rolls everything back)."""
    if offered.typed:
        await count(ctx, user_id)
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None:
            raise NotApplicable(N_("There is no such account."))
        if offered.typed:
            await check_typed(session, ctx, user, offered)
        elif not await sessions.recently_authenticated(
            session, offered.sign_in, user.id, within=ctx.settings.REAUTHENTICATION_TIMEOUT
        ):
            raise ReauthenticationRequired
        yield session, user
    if offered.typed:
        await forget(ctx, user_id)
