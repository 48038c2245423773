""" "Connected accounts": the accounts at other identity providers that sign an account in,
listed for its owner and disconnected, never the account's only way in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select

from shared import passwords
from shared.i18n import N_
from shared.models import FederatedIdentity, Passkey
from shared.services import events, proof
from shared.services.context import ServiceContext
from shared.services.refusals import NotApplicable


@dataclass(frozen=True, slots=True)
class Connected:
    id: int
    provider: str
    name: str
    email: str | None
    created_at: datetime
    last_used_at: datetime | None


async def listed(ctx: ServiceContext, user_id: int) -> list[Connected]:
    async with ctx.reading() as session:
        rows = await session.scalars(
            select(FederatedIdentity)
            .where(FederatedIdentity.user_id == user_id)
            .order_by(FederatedIdentity.created_at)
        )
        names = {p.id: p.name for p in ctx.settings.federation_providers}
        return [
            Connected(r.id, r.provider, names.get(r.provider, r.provider), r.email,
                      r.created_at, r.last_used_at)
            for r in rows
        ]  # fmt: skip


async def unlink(ctx: ServiceContext, user_id: int, identity_id: int, offered: proof.Proof) -> bool:
    """Unlink one of the account's identities (a fresh proof: sudo). Never the last way to
    sign in: an account with no password and no passkey keeps its only identity
    (NotApplicable). False if the account has no such identity."""
    async with proof.proven(ctx, user_id, offered) as (session, user):
        identities = list(
            await session.scalars(
                select(FederatedIdentity).where(FederatedIdentity.user_id == user_id)
            )
        )
        target = next((i for i in identities if i.id == identity_id), None)
        if target is None:
            return False
        keys = await session.scalar(
            select(func.count()).select_from(Passkey).where(Passkey.user_id == user_id)
        )
        if len(identities) == 1 and not passwords.is_usable(user.password_hash) and not keys:
            raise NotApplicable(
                N_(
                    "This is the only way to sign in to your account: set a password or add a "
                    "passkey first."
                )
            )
        await session.execute(delete(FederatedIdentity).where(FederatedIdentity.id == identity_id))
        await events.record(session, events.Kind.IDENTITY_UNLINKED, user_id,
                            provider=target.provider)  # fmt: skip
    return True
