"""Account operations: registration, confirmation, authentication, texts.

Every function takes the caller's session, flushes, adds outbox rows, and never commits: the
request (or job) that called it commits at its boundary, so the change and the emails it
causes are one transaction.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.jobs import AlreadyRegistered, ConfirmEmail, EmailKind
from shared.models import Email, TextPost, User
from shared.outbox import add_email

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{2,25}$")


class UsernameTaken(Exception):
    """Usernames are public, so saying one is taken reveals nothing."""


def normalize_username(username: str) -> str:
    """NFKC, so full-width and other compatibility forms become their plain letters."""
    return unicodedata.normalize("NFKC", username).strip()


def username_key(username: str) -> str:
    """What uniqueness compares: normalised and case-folded ("Alice" and "ALICE" collide)."""
    return normalize_username(username).casefold()


def email_key(email: str) -> str:
    """Addresses are compared case-insensitively (the local part too, as most providers do)."""
    return unicodedata.normalize("NFKC", email).strip().casefold()


async def find_user_by_email(
    session: AsyncSession, email: str, *, lock: bool = False
) -> User | None:
    """The account for ``email`` (compared as normalised); ``lock``: hold its row until the
    transaction ends, for a read-modify-write of its counters."""
    query = select(User).where(User.email_key == email_key(email))
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


@dataclass(frozen=True, slots=True)
class Registration:
    """``user`` is None when the address already had an account: the caller must answer
    exactly as for a new account (the owner gets a notice email instead)."""

    user: User | None


async def register_user(
    session: AsyncSession,
    *,
    username: str,
    email: str,
    password_hash: str,
    notice_interval: int,
) -> Registration:
    """Create an account and queue its confirmation email.

    Raises :class:`UsernameTaken`. An address that already has an account gets a "someone
    tried to register" notice (at most one per ``notice_interval`` seconds) and no new account.
    """
    username = normalize_username(username)
    if await session.scalar(select(User.id).where(User.username_key == username_key(username))):
        raise UsernameTaken
    existing = await find_user_by_email(session, email)
    if existing is not None:
        await _notify_existing_owner(session, existing, notice_interval)
        return Registration(user=None)

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
        return Registration(user=None)
    await issue_confirmation(session, user)
    return Registration(user=user)


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


async def issue_confirmation(session: AsyncSession, user: User) -> Email:
    """Queue a confirmation email; its link supersedes every earlier one ("latest link wins")."""
    user.confirm_generation += 1
    await session.flush()
    return await add_email(
        session,
        EmailKind.CONFIRM,
        user.email,
        ConfirmEmail(user_id=user.id, generation=user.confirm_generation),
        user_id=user.id,
    )


async def resend_confirmation(
    session: AsyncSession, user: User, *, interval: int
) -> datetime | None:
    """Queue a fresh confirmation email, or return when the next one may be asked for."""
    latest = await _recent_email(session, user.id, EmailKind.CONFIRM, interval)
    if latest is not None:
        return latest + timedelta(seconds=interval)
    await issue_confirmation(session, user)
    return None


class ConfirmOutcome(enum.Enum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already confirmed"
    INVALID = "invalid"  # unknown user or a superseded link


async def confirm_email(session: AsyncSession, user_id: int, generation: int) -> ConfirmOutcome:
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        return ConfirmOutcome.INVALID
    if user.confirmed_at is not None:
        return ConfirmOutcome.ALREADY_CONFIRMED
    if generation != user.confirm_generation:
        return ConfirmOutcome.INVALID
    user.confirmed_at = datetime.now(UTC)
    await session.flush()
    return ConfirmOutcome.CONFIRMED


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    """The user whose email and password match, else None: the same answer, in about the same
    time, for an unknown address and a wrong password."""
    user = await find_user_by_email(session, email)
    if user is None:
        await passwords.verify_dummy(password)
        return None
    matches, needs_rehash = await passwords.verify_password(user.password_hash, password)
    if not matches:
        return None
    if needs_rehash:
        user.password_hash = await passwords.hash_password(password)
        await session.flush()
    return user


async def create_text(session: AsyncSession, author: User, title: str, content: str) -> TextPost:
    text = TextPost(title=title, content=content, author_id=author.id)
    session.add(text)
    await session.flush()
    return text
