"""Reading accounts: the queries every account use case shares."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import User, UsernameHold
from shared.validation import email_key, username_key


async def by_email(session: AsyncSession, email: str, *, lock: bool = False) -> User | None:
    """The account for ``email`` (compared by its key); ``lock``: hold its row until the
    transaction ends, for a read-modify-write."""
    query = select(User).where(User.email_key == email_key(email))
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


async def by_id(session: AsyncSession, user_id: int, *, lock: bool = False) -> User | None:
    return await session.get(User, user_id, with_for_update=lock)


async def hold_username(session: AsyncSession, username: str, *, seconds: int) -> bool:
    """Hold ``username`` for a registration for ``seconds``; False if an account has it or
    another registration holds it. One statement decides between concurrent registrations."""
    key = username_key(username)
    if await session.scalar(select(User.id).where(User.username_key == key)) is not None:
        return False
    statement = (
        insert(UsernameHold)
        .values(username_key=key, expires_at=func.now() + timedelta(seconds=seconds))
        .on_conflict_do_update(
            index_elements=[UsernameHold.username_key],
            set_={"expires_at": func.now() + timedelta(seconds=seconds)},
            where=UsernameHold.expires_at < func.now(),
        )
        .returning(UsernameHold.username_key)
    )
    return await session.scalar(statement) is not None
