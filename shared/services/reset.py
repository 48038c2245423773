"""Password reset, password change and "this wasn't me".

Like every service module: functions take the caller's session, flush, add outbox rows and
never commit.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shared.jobs import EmailKind, PasswordChanged, ResetEmail
from shared.models import User
from shared.outbox import add_email
from shared.tokens import int_field, password_fingerprint


async def issue_reset(session: AsyncSession, user: User) -> None:
    """Queue a reset link; it supersedes every earlier one ("latest link wins").

    The caller holds ``user``'s row lock, so that concurrent requests get distinct generations.
    """
    user.reset_generation += 1
    await session.flush()
    await add_email(
        session,
        EmailKind.RESET,
        user.email,
        ResetEmail(user_id=user.id, generation=user.reset_generation),
        user_id=user.id,
    )


def reset_token_payload(user: User, secret: str) -> dict[str, object]:
    return {
        "uid": user.id,
        "gen": user.reset_generation,
        "fp": password_fingerprint(user.password_hash, secret),
    }


async def user_for_reset_token(
    session: AsyncSession, payload: dict[str, object] | None, secret: str, *, lock: bool = False
) -> User | None:
    """The user a reset payload is for, if it is still the latest link and the password has
    not changed since it was issued (which makes every link single-use)."""
    if payload is None:
        return None
    user_id, generation = int_field(payload, "uid"), int_field(payload, "gen")
    if user_id is None or generation is None:
        return None
    user = await session.get(User, user_id, with_for_update=lock)
    if user is None or user.reset_generation != generation:
        return None
    if payload.get("fp") != password_fingerprint(user.password_hash, secret):
        return None
    return user


async def set_password(
    session: AsyncSession, user: User, password_hash: str, *, notify: bool = True
) -> None:
    """Store a new password, end every session (the caller re-logs the current one in if it
    should stay), kill outstanding reset links, and tell the owner."""
    user.password_hash = password_hash
    user.session_version += 1
    user.reset_generation += 1
    await session.flush()
    if notify:
        await add_email(
            session,
            EmailKind.PASSWORD_CHANGED,
            user.email,
            PasswordChanged(user_id=user.id, session_version=user.session_version),
            user_id=user.id,
        )


async def disown_change(session: AsyncSession, user: User) -> None:
    """ "This wasn't me": end every session of the account and send a fresh reset link."""
    user.session_version += 1
    await issue_reset(session, user)
