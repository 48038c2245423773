"""Changing the account's address: asked for with the password, effective only once the new
address confirms it, announced to the old address at once and after, and answering alike
whether or not the new address belongs to another account."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.i18n import N_
from shared.jobs import (
    EmailChangeConfirm,
    EmailChanged,
    EmailChangeRequested,
    EmailInUse,
    EmailKind,
)
from shared.outbox import add_email, email_user
from shared.services import events, proof, sessions, users
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.tokens import ChangeEmailLink
from shared.validation import InvalidInput, email_key


async def request_change(
    ctx: ServiceContext,
    user_id: int,
    new_email: str,
    password: str = "",
    *,
    sign_in: str | None = None,
) -> None:
    """Ask to move the account to ``new_email``. The old address is told at once (with a
    "this wasn't me" link); after the answer, the new address gets a confirmation link or,
    if it already belongs to an account, that account's owner gets a notice instead. Only
    the latest request's link works. Raises :class:`InvalidInput` for the current address,
    and the refusals of :func:`shared.services.proof.proven` (a recent authentication of
    ``sign_in``, the session asking, or the password, is the proof). "This wasn't me" also
    undoes what ``sign_in`` added."""
    offered = proof.Proof(sign_in=sign_in, password=password)
    async with proof.proven(ctx, user_id, offered) as (session, user):
        if email_key(new_email) == user.email_key:
            raise InvalidInput("new_email", N_("That is already your address."))
        user.pending_email = new_email
        user.email_change_generation += 1
        generation = user.email_change_generation
        await events.record(session, Kind.EMAIL_CHANGE_REQUESTED, user.id)
        await email_user(
            session,
            user,
            EmailChangeRequested(
                user_id=user.id,
                session_version=user.session_version,
                new_email=new_email,
                session=await session.scalar(sessions.public_id_of(sign_in)),
            ),
        )
    ctx.defer(_link_or_notice, ctx, user_id, generation, new_email)


async def _link_or_notice(
    ctx: ServiceContext, user_id: int, generation: int, new_email: str
) -> None:

    async def link_or_notice(session: AsyncSession) -> None:
        owner = await users.by_email(session, new_email)
        if owner is not None:
            await email_user(session, owner, EmailInUse(user_id=owner.id))
            return
        await add_email(
            session,
            EmailKind.EMAIL_CHANGE_CONFIRM,
            new_email,
            EmailChangeConfirm(user_id=user_id, generation=generation, new_email=new_email),
            user_id=user_id,
        )

    await ctx.commit_together(link_or_notice)


class ConfirmOutcome(enum.Enum):
    CHANGED = "changed"
    INVALID = "invalid"  # forged, expired, superseded, used, or the address was taken since


async def confirm_change(ctx: ServiceContext, token: str) -> ConfirmOutcome:
    """Make the new address the account's: confirmed (the link reached it), every older
    link for the account stops working, and the old address gets a last notice."""
    link = ctx.tokens.read(ChangeEmailLink, token, max_age=ctx.settings.CONFIRM_TOKEN_MAX_AGE)
    if link is None:
        return ConfirmOutcome.INVALID
    try:
        return await _confirm(ctx, link.user_id, link.generation, link.new_email)
    except IntegrityError:
        # Another account confirmed the same free address at the same moment: the unique
        # key refused this one, which is then a link for an address taken since.
        return ConfirmOutcome.INVALID


async def _confirm(
    ctx: ServiceContext, user_id: int, generation: int, new_email: str
) -> ConfirmOutcome:
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if (
            user is None
            or user.email_change_generation != generation
            or user.pending_email != new_email
        ):
            return ConfirmOutcome.INVALID
        if await users.by_email(session, new_email) is not None:
            return ConfirmOutcome.INVALID  # taken by another account since the request
        old_email = user.email
        user.email, user.email_key = new_email, email_key(new_email)
        user.confirmed_at = datetime.now(UTC)
        user.pending_email = None
        user.email_change_generation += 1  # this link is spent
        # Links sent to the old address stop working, as its last notice says: resets,
        # confirmations, and "this wasn't me" (and a second step waiting on the old version).
        user.reset_generation += 1
        user.confirm_generation += 1
        user.session_version += 1
        await events.record(session, Kind.EMAIL_CHANGED, user.id, email=new_email)
        await session.flush()
        await add_email(
            session,
            EmailKind.EMAIL_CHANGED,
            old_email,
            EmailChanged(user_id=user.id, new_email=new_email),
            user_id=user.id,
        )
    return ConfirmOutcome.CHANGED
