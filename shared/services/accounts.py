"""Registration, email confirmation and the account page."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.jobs import AlreadyRegistered, ConfirmEmail, EmailKind
from shared.models import Email, EmailStatus, User
from shared.outbox import add_email, email_user
from shared.ratelimit import Limit
from shared.services import events, users
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.tokens import ConfirmLink
from shared.validation import (
    InvalidInput,
    check_new_password,
    email_key,
    normalize_username,
)

FIRST_LINK = 1  # a new account's confirmation link generation: later links supersede it


class UsernameTaken(Exception):
    """Usernames are public, so saying one is taken reveals nothing."""


class TooManyRegistrations(Exception):
    """Every client together has used the service's registration budget: a flood must not
    take the argon2 CPU and the mail queue from everyone else."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def registration_limit(ctx: ServiceContext) -> Limit:
    return Limit("registrations", ctx.settings.REGISTRATIONS_PER_MINUTE, 60)


# What proves the address instead of a confirmation link, for an account without a password:
# given the transaction, the account's id and address (a sign-in code, issued by
# shared.services.login_codes, which owns signing up without a password).
ProveAddress = Callable[[AsyncSession, int, str], Awaitable[None]]


async def register(
    ctx: ServiceContext,
    username: str,
    email: str,
    password: str | None,
    *,
    prove: ProveAddress | None = None,
) -> None:
    """Hold the username, then, after the answer, create the account and queue its
    confirmation email or, for an address that already has an account, email its owner.
    Without a password (``None``), the account has none (it signs in by emailed code or
    passkey) and ``prove`` sends what proves its address instead of the link.

    Raises :class:`UsernameTaken`, :class:`InvalidInput` or :class:`TooManyRegistrations`.
    Otherwise nothing a stranger can observe differs between a new address and a known one:
    the answer does the same work in both cases (the hash and the username hold) and the
    rest happens after it; the username is held in both cases, until the confirmation
    window ends; and signing in needs a confirmed address.
    """
    username = normalize_username(username)
    if password is not None:
        try:
            await check_new_password(password, username, email)
        except ValueError as error:
            raise InvalidInput("password", str(error)) from None
    verdict = await ctx.limits.hit(registration_limit(ctx), "all")
    if not verdict.allowed:
        raise TooManyRegistrations(verdict.retry_after)
    if password is None:
        password_hash = passwords.UNUSABLE_PREFIX + secrets.token_urlsafe(24)
    else:
        password_hash = await passwords.hash_password(password)
    async with ctx.unit_of_work() as session:
        if not await users.hold_username(
            session, username, email, seconds=ctx.settings.CONFIRM_TOKEN_MAX_AGE
        ):
            raise UsernameTaken
    ctx.defer(_create_account_or_notify, ctx, username, email, password_hash, prove)


async def _create_account_or_notify(
    ctx: ServiceContext,
    username: str,
    email: str,
    password_hash: str,
    prove: ProveAddress | None,
) -> None:
    interval = ctx.settings.CONFIRM_RESEND_INTERVAL

    async def create_or_notify(session: AsyncSession) -> None:
        existing = await users.by_email(session, email, lock=True)
        if existing is not None and existing.confirmed_at is None:
            if prove is not None:  # the code, which confirms it too
                await prove(session, existing.id, existing.email)
            else:
                await _confirm_again(session, existing, interval)  # lost the first email?
            return
        if existing is not None:
            await _notify_existing_owner(session, existing, interval)
            return
        user_id = await users.create(
            session, username, email, password_hash, confirm_generation=FIRST_LINK
        )
        if user_id is None:
            return  # a concurrent registration of the same address won; it has the email
        await events.record(session, Kind.REGISTERED, user_id, username=username, email=email)
        if prove is not None:
            await prove(session, user_id, email)
            return
        link = ConfirmEmail(user_id=user_id, generation=FIRST_LINK)
        await add_email(session, EmailKind.CONFIRM, email, link, user_id=user_id)

    await ctx.commit_together(create_or_notify, lock_key=email_key(email))


async def _notify_existing_owner(session: AsyncSession, user: User, interval: int) -> None:
    if await _recent_email(session, user.id, EmailKind.ALREADY_REGISTERED, interval):
        return  # repeated attempts must not turn us into a mail cannon aimed at the owner
    await email_user(session, user, AlreadyRegistered(user_id=user.id))


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


async def _issue_confirmation(session: AsyncSession, user: User) -> int:
    """Queue a confirmation email; its link supersedes every earlier one ("latest link wins").
    The caller holds the user's row (new, or locked)."""
    user.confirm_generation += 1
    await session.flush()
    return await email_user(
        session, user, ConfirmEmail(user_id=user.id, generation=user.confirm_generation)
    )


class ConfirmOutcome(enum.Enum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already confirmed"
    INVALID = "invalid"  # forged, expired, superseded, or its account is gone


def confirmation_link_genuine(ctx: ServiceContext, token: str) -> bool:
    """Whether ``token`` is a confirmation link this service made and still in its time (the
    signature and age only: whether it is still the newest is for :func:`confirm`). What
    the page checks before it offers "confirm my address"."""
    return (
        ctx.tokens.read(ConfirmLink, token, max_age=ctx.settings.CONFIRM_TOKEN_MAX_AGE) is not None
    )


async def confirm(ctx: ServiceContext, token: str) -> ConfirmOutcome:
    settings = ctx.settings
    link = ctx.tokens.read(ConfirmLink, token, max_age=settings.CONFIRM_TOKEN_MAX_AGE)
    if link is None:
        return ConfirmOutcome.INVALID
    generation = link.generation
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, link.user_id, lock=True)
        if user is None:
            return ConfirmOutcome.INVALID
        if user.confirmed_at is not None:
            return ConfirmOutcome.ALREADY_CONFIRMED
        if generation != user.confirm_generation:
            return ConfirmOutcome.INVALID
        user.confirmed_at = datetime.now(UTC)
        await events.record(session, Kind.CONFIRMED, user.id, email=user.email)
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
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None or user.confirmed_at is not None:
            return ResendOutcome(Resend.ALREADY_CONFIRMED)
        next_allowed = await _confirm_again(session, user, ctx.settings.CONFIRM_RESEND_INTERVAL)
    if next_allowed is not None:
        return ResendOutcome(Resend.TOO_SOON, next_allowed)
    return ResendOutcome(Resend.SENT)


async def _confirm_again(session: AsyncSession, user: User, interval: int) -> datetime | None:
    """Queue a fresh confirmation link unless one went out within ``interval``; then, when
    the next may be asked for."""
    latest = await _recent_email(session, user.id, EmailKind.CONFIRM, interval)
    if latest is not None:
        return latest + timedelta(seconds=interval)
    await _issue_confirmation(session, user)
    return None


async def request_confirmation(ctx: ServiceContext, email: str) -> None:
    """ "Send me the confirmation link again", signed out: the same answer whatever the
    address; the link goes out after the answer if the address has an account waiting for
    confirmation (at most one per CONFIRM_RESEND_INTERVAL)."""
    ctx.defer(_confirm_again_if_waiting, ctx, email)


async def _confirm_again_if_waiting(ctx: ServiceContext, email: str) -> None:
    async def confirm_again(session: AsyncSession) -> None:
        user = await users.by_email(session, email, lock=True)
        if user is not None and user.confirmed_at is None:
            await _confirm_again(session, user, ctx.settings.CONFIRM_RESEND_INTERVAL)

    await ctx.commit_together(confirm_again, lock_key=email_key(email))


async def last_email_sent(ctx: ServiceContext, user_id: int) -> datetime | None:
    """When the newest email to this account left (the account page shows it)."""
    async with ctx.reading() as session:
        return await session.scalar(
            select(func.max(Email.sent_at)).where(
                Email.user_id == user_id, Email.status == EmailStatus.SENT
            )
        )
