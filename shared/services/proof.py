"""A fresh proof of who you are: what a change that adds, removes or weakens a way into the
account asks for, on every path (pages and API alike), so that a stolen session cookie alone
cannot add a passkey or turn two-factor on for its thief.

The proof is the account's password, or, on an account with two-factor sign-in, a current
authenticator code or an unused recovery code. Each check is counted before it is made (one
per-account limit for every such check), so a stolen session is no oracle for either.
:func:`proven` is the prologue those operations share: count, lock the account's row, check
the proof; the operation runs in the transaction it opens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.models import User
from shared.ratelimit import Limit
from shared.services import factors, users
from shared.services.context import ServiceContext
from shared.services.refusals import Locked, NotApplicable, WrongCode, WrongPassword
from shared.validation import InvalidInput


@dataclass(frozen=True, slots=True)
class Proof:
    """What the person typed to prove it is them: a password, a code, or both."""

    password: str = ""
    code: str = ""
    field: str = "password"  # where a wrong password is shown ("current_password")


def limit(ctx: ServiceContext) -> Limit:
    """Proof checks per account, counted before each: a stolen session must not become an
    unlimited password (or code) oracle."""
    settings = ctx.settings
    return Limit("password-check", settings.LOGIN_FAILURES_BEFORE_LOCK, settings.LOGIN_LOCK_SECONDS)


async def count(ctx: ServiceContext, user_id: int) -> None:
    """Count one proof check; :class:`Locked` when the account's are spent."""
    verdict = await ctx.limits.hit(limit(ctx), str(user_id))
    if not verdict.allowed:
        raise Locked(verdict.retry_after)


async def forget(ctx: ServiceContext, user_id: int) -> None:
    """A proof was accepted: the count starts again."""
    await ctx.limits.clear(limit(ctx), str(user_id))


async def check(session: AsyncSession, ctx: ServiceContext, user: User, offered: Proof) -> None:
    """Return if ``offered`` proves it is ``user`` (whose row the caller holds locked); raise
    :class:`WrongPassword` or :class:`WrongCode` if not, :class:`InvalidInput` if nothing
    was offered."""
    if offered.password:
        matches, _ = await passwords.verify_password(user.password_hash, offered.password)
        if not matches:
            raise WrongPassword(offered.field)
        return
    if offered.code and user.totp_enabled_at is not None:
        if await factors.check_code(session, ctx, user, offered.code) is None:
            raise WrongCode
        return
    raise InvalidInput(offered.field, "Enter your password to confirm it is you.")


@asynccontextmanager
async def proven(
    ctx: ServiceContext, user_id: int, offered: Proof
) -> AsyncIterator[tuple[AsyncSession, User]]:
    """``async with proven(ctx, user_id, offered) as (session, user)``: the check counted,
    the account's row locked and the proof checked, in the unit of work the operation then
    runs in (a refusal raised in it rolls everything back); the count starts again once the
    operation has committed."""
    await count(ctx, user_id)
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None:
            raise NotApplicable("There is no such account.")
        await check(session, ctx, user, offered)
        yield session, user
    await forget(ctx, user_id)
