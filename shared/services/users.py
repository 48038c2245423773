"""Reading accounts: the queries every account use case shares."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, func, select, update
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


_USERS = cast(Table, User.__table__)
# Built once: building the statement cost more than running it (profiled on the reset path).
_NEXT_RESET_GENERATION = (
    update(_USERS)
    .where(_USERS.c.email_key == bindparam("key"))
    .values(reset_generation=_USERS.c.reset_generation + 1)
    .returning(_USERS.c.id, _USERS.c.email, _USERS.c.reset_generation)
)


async def next_reset_generation(session: AsyncSession, email: str) -> Row[Any] | None:
    """(id, email, reset_generation) of the account for ``email``, its reset link generation
    moved on by one, in one statement (its row stays locked until the transaction ends);
    None if there is none."""
    return (await session.execute(_NEXT_RESET_GENERATION, {"key": email_key(email)})).one_or_none()


async def by_id(session: AsyncSession, user_id: int, *, lock: bool = False) -> User | None:
    return await session.get(User, user_id, with_for_update=lock)


async def hold_username(session: AsyncSession, username: str, email: str, *, seconds: int) -> bool:
    """Hold ``username`` for a registration by ``email`` for ``seconds``; False if another
    address's account has it or another address's registration holds it. The same address
    may register with the same name again. One statement decides between concurrent
    registrations."""
    key, address = username_key(username), email_key(email)
    owner = await session.scalar(select(User.email_key).where(User.username_key == key))
    if owner is not None and owner != address:
        return False
    until = func.now() + timedelta(seconds=seconds)
    statement = (
        insert(UsernameHold)
        .values(username_key=key, email_key=address, expires_at=until)
        .on_conflict_do_update(
            index_elements=[UsernameHold.username_key],
            set_={"email_key": address, "expires_at": until},
            where=(UsernameHold.expires_at < func.now()) | (UsernameHold.email_key == address),
        )
        .returning(UsernameHold.username_key)
    )
    return await session.scalar(statement) is not None
