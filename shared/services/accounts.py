"""Registration, email confirmation and the account page."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.jobs import AlreadyRegistered, ConfirmEmail, EmailKind
from shared.models import Email, EmailStatus, User
from shared.outbox import add_email
from shared.services import users
from shared.services.context import ServiceContext
from shared.tokens import Purpose, int_field
from shared.validation import (
    InvalidInput,
    check_password,
    email_key,
    normalize_username,
    username_key,
)


class UsernameTaken(Exception):
    """Usernames are public, so saying one is taken reveals nothing."""


async def register(ctx: ServiceContext, username: str, email: str, password: str) -> None:
    """Create the account and queue its confirmation email; for an address that already has
    an account, queue a notice to its owner instead (at most one per
    ``CONFIRM_RESEND_INTERVAL``) and create nothing.

    Raises :class:`UsernameTaken` or :class:`InvalidInput`. Otherwise the outcome is the same
    whether the address was new or not, to prevent account enumeration.
    """
    username = normalize_username(username)
    try:
        check_password(password, username, email)
    except ValueError as error:
        raise InvalidInput("password", str(error)) from None
    # Hash first: the answer takes as long whether or not the address has an account.
    password_hash = await passwords.hash_password(password)
    async with ctx.unit_of_work() as session:
        if await users.username_taken(session, username):
            raise UsernameTaken
        existing = await users.by_email(session, email)
        if existing is not None:
            await _notify_existing_owner(session, existing, ctx.settings.CONFIRM_RESEND_INTERVAL)
            return
        user = User(
            username=username,
            username_key=username_key(username),
            email=email,
            email_key=email_key(email),
            password_hash=password_hash,
        )
        try:
            async with session.begin_nested():
                session.add(user)
                await session.flush()
        except IntegrityError as error:
            # A concurrent registration won the race between our check and our insert.
            if "uq_users_username_key" in str(error.orig):
                raise UsernameTaken from None
            return
        await _issue_confirmation(session, user)


async def _notify_existing_owner(session: AsyncSession, user: User, interval: int) -> None:
    if await _recent_email(session, user.id, EmailKind.ALREADY_REGISTERED, interval):
        return  # repeated attempts must not turn us into a mail cannon aimed at the owner
    await add_email(
        session,
        EmailKind.ALREADY_REGISTERED,
        user.email,
        AlreadyRegistered(user_id=user.id),
        user_id=user.id,
    )


async def _recent_email(
    session: AsyncSession, user_id: int, kind: EmailKind, interval: int
) -> datetime | None:
    """When the newest email of ``kind`` to this user was queued, if within ``interval`` s."""
    latest = await session.scalar(
        select(func.max(Email.created_at)).where(Email.user_id == user_id, Email.kind == kind)
    )
    if latest is not None and latest > datetime.now(UTC) - timedelta(seconds=interval):
        return latest
    return None


async def _issue_confirmation(session: AsyncSession, user: User) -> Email:
    """Queue a confirmation email; its link supersedes every earlier one ("latest link wins").
    The caller holds the user's row (new, or locked)."""
    user.confirm_generation += 1
    await session.flush()
    return await add_email(
        session,
        EmailKind.CONFIRM,
        user.email,
        ConfirmEmail(user_id=user.id, generation=user.confirm_generation),
        user_id=user.id,
    )


class ConfirmOutcome(enum.Enum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already confirmed"
    INVALID = "invalid"  # forged, expired, superseded, or its account is gone


async def confirm(ctx: ServiceContext, token: str) -> ConfirmOutcome:
    settings = ctx.settings
    payload = ctx.tokens.loads(Purpose.CONFIRM_EMAIL, token, max_age=settings.CONFIRM_TOKEN_MAX_AGE)
    user_id = int_field(payload, "uid") if payload else None
    generation = int_field(payload, "gen") if payload else None
    if user_id is None or generation is None:
        return ConfirmOutcome.INVALID
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None:
            return ConfirmOutcome.INVALID
        if user.confirmed_at is not None:
            return ConfirmOutcome.ALREADY_CONFIRMED
        if generation != user.confirm_generation:
            return ConfirmOutcome.INVALID
        user.confirmed_at = datetime.now(UTC)
    return ConfirmOutcome.CONFIRMED


class Resend(enum.Enum):
    SENT = "sent"
    ALREADY_CONFIRMED = "already confirmed"
    TOO_SOON = "too soon"


@dataclass(frozen=True, slots=True)
class ResendOutcome:
    result: Resend
    next_allowed: datetime | None = None  # when another may be asked for, if TOO_SOON

    @property
    def wait_seconds(self) -> int:
        if self.next_allowed is None:
            return 0
        return max(1, int((self.next_allowed - datetime.now(UTC)).total_seconds()))


async def resend_confirmation(ctx: ServiceContext, user_id: int) -> ResendOutcome:
    """A fresh confirmation link (older ones stop working), at most one per interval."""
    interval = ctx.settings.CONFIRM_RESEND_INTERVAL
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None or user.confirmed_at is not None:
            return ResendOutcome(Resend.ALREADY_CONFIRMED)
        latest = await _recent_email(session, user.id, EmailKind.CONFIRM, interval)
        if latest is not None:
            return ResendOutcome(Resend.TOO_SOON, latest + timedelta(seconds=interval))
        await _issue_confirmation(session, user)
    return ResendOutcome(Resend.SENT)


async def last_email_sent(ctx: ServiceContext, user_id: int) -> datetime | None:
    """When the newest email to this account left (the account page shows it)."""
    async with ctx.reading() as session:
        return await session.scalar(
            select(func.max(Email.sent_at)).where(
                Email.user_id == user_id, Email.status == EmailStatus.SENT
            )
        )
