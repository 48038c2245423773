"""Reading accounts: the queries every account use case shares."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import User
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


async def username_taken(session: AsyncSession, username: str) -> bool:
    found = await session.scalar(select(User.id).where(User.username_key == username_key(username)))
    return found is not None
