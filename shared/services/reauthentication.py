"""Re-authentication ("sudo mode"): a signed-in person shows again that it is them, with any
of the account's methods, and their sign-in's authentication moves to now; for
REAUTHENTICATION_TIMEOUT after it, sensitive changes need nothing more (:mod:`.proof`).

The methods are the account's own: its password (if it has a usable one), a code from its
authenticator app or a recovery code (if two-factor is on), one of its passkeys
(:func:`shared.services.passkeys.reauthenticate`), or a code emailed to its address
(:func:`shared.services.login_codes.reauthenticate`). Each is counted before it is checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.i18n import N_
from shared.models import Passkey, User
from shared.services import events, proof, sessions, users
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.services.refusals import NotApplicable


@dataclass(frozen=True, slots=True)
class Methods:
    """The ways this account can re-authenticate (what the page offers)."""

    password: bool
    authenticator: bool
    passkey: bool
    email: bool = True


async def methods(ctx: ServiceContext, user_id: int) -> Methods:
    async with ctx.reading() as session:
        user = await users.by_id(session, user_id)
        if user is None:
            raise NotApplicable(N_("There is no such account."))
        keys = await session.scalar(
            select(func.count()).select_from(Passkey).where(Passkey.user_id == user_id)
        )
    return Methods(
        password=passwords.is_usable(user.password_hash),
        authenticator=user.totp_enabled_at is not None,
        passkey=bool(keys),
    )


async def renew(session: AsyncSession, user: User, sign_in: str | None, method: str) -> None:
    """``user`` proved it is them with ``method``: their sign-in's authentication is now (in
    the caller's transaction, which checked the method)."""
    if sign_in is None or not await sessions.renew(session, sign_in, user.id):
        raise NotApplicable(N_("This sign-in has ended. Please sign in again."))
    await events.record(session, Kind.REAUTHENTICATED, user.id, method=method)


async def with_typed(
    ctx: ServiceContext, user_id: int, sign_in: str | None, offered: proof.Proof
) -> None:
    """Re-authenticate with the password, or an authenticator or recovery code; counted
    first, with every other proof check of the account."""
    await proof.count(ctx, user_id)
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None:
            raise NotApplicable(N_("There is no such account."))
        method = await proof.check_typed(session, ctx, user, offered)
        await renew(session, user, sign_in, method)
    await proof.forget(ctx, user_id)
