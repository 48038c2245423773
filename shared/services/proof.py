"""A fresh proof of who you are: what a change that adds, removes or weakens a way into the
account asks for, on every path (pages and API alike), so that a stolen session cookie alone
cannot add a passkey or turn two-factor on for its thief.

The proof is the account's password, or, on an account with two-factor sign-in, a current
authenticator code or an unused recovery code. Each check is counted before it is made (the
same per-account limit as the password check when changing the password), so a stolen
session is no oracle for either.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.models import User
from shared.ratelimit import Limit, Verdict
from shared.services import factors
from shared.services.context import ServiceContext
from shared.validation import InvalidInput


@dataclass(frozen=True, slots=True)
class Proof:
    """What the person typed to prove it is them: a password, a code, or both."""

    password: str = ""
    code: str = ""


class Refusal(enum.Enum):
    WRONG_PASSWORD = "wrong password"  # noqa: S105 (an outcome)
    WRONG_CODE = "wrong code"


def limit(ctx: ServiceContext) -> Limit:
    """Proof checks per account, counted before each: a stolen session must not become an
    unlimited password (or code) oracle."""
    settings = ctx.settings
    return Limit("password-check", settings.LOGIN_FAILURES_BEFORE_LOCK, settings.LOGIN_LOCK_SECONDS)


async def count(ctx: ServiceContext, user_id: int) -> Verdict:
    return await ctx.limits.hit(limit(ctx), str(user_id))


async def forget(ctx: ServiceContext, user_id: int) -> None:
    """A proof was accepted: the count starts again."""
    await ctx.limits.clear(limit(ctx), str(user_id))


async def refusal(
    session: AsyncSession, ctx: ServiceContext, user: User, proof: Proof
) -> Refusal | None:
    """None when ``proof`` proves it is ``user`` (whose row the caller holds locked); raises
    :class:`InvalidInput` when nothing was offered."""
    if proof.password:
        matches, _ = await passwords.verify_password(user.password_hash, proof.password)
        return None if matches else Refusal.WRONG_PASSWORD
    if proof.code and user.totp_enabled_at is not None:
        used = await factors.check_code(session, ctx, user, proof.code)
        return None if used is not None else Refusal.WRONG_CODE
    raise InvalidInput("password", "Enter your password to confirm it is you.")
