"""The account statements the use cases share: look-ups, creation, the username hold and the
reset link generation (the hot ones built once, their values bound parameters)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Interval, Row, Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import insert_bound
from shared.models import User, UsernameHold
from shared.validation import email_key, username_key

# Built once, their values bound parameters (see shared.db.insert_bound for why).
_BY_EMAIL = select(User).where(User.email_key == bindparam("key"))
_BY_EMAIL_LOCKED = _BY_EMAIL.with_for_update()


async def by_email(session: AsyncSession, email: str, *, lock: bool = False) -> User | None:
    """The account for ``email`` (compared by its key); ``lock``: hold its row until the
    transaction ends, for a read-modify-write."""
    query = _BY_EMAIL_LOCKED if lock else _BY_EMAIL
    return await session.scalar(query, {"key": email_key(email)})


_USERS = cast(Table, User.__table__)
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


_CREATE = (
    insert_bound(
        _USERS,
        "username",
        "username_key",
        "email",
        "email_key",
        "password_hash",
        "confirm_generation",
    )
    .on_conflict_do_nothing()
    .returning(_USERS.c.id)
)


async def create(
    session: AsyncSession, username: str, email: str, password_hash: str, *, confirm_generation: int
) -> int | None:
    """Add an account in one statement; its id, or None when the address or the username
    has an account already (a concurrent registration won: no error, no savepoint)."""
    values = {
        "username": username,
        "username_key": username_key(username),
        "email": email,
        "email_key": email_key(email),
        "password_hash": password_hash,
        "confirm_generation": confirm_generation,
    }
    user_id: int | None = await session.scalar(_CREATE, values)
    return user_id


_HOLDS = cast(Table, UsernameHold.__table__)
_USERNAME_OWNER = select(_USERS.c.email_key).where(_USERS.c.username_key == bindparam("key"))
_HOLD_UNTIL = func.now() + bindparam("seconds", type_=Interval)
_HOLD = (
    insert(_HOLDS)
    .values(username_key=bindparam("key"), email_key=bindparam("address"), expires_at=_HOLD_UNTIL)
    .on_conflict_do_update(
        index_elements=[_HOLDS.c.username_key],
        set_={"email_key": bindparam("address"), "expires_at": _HOLD_UNTIL},
        where=(_HOLDS.c.expires_at < func.now()) | (_HOLDS.c.email_key == bindparam("address")),
    )
    .returning(_HOLDS.c.username_key)
)


async def hold_username(session: AsyncSession, username: str, email: str, *, seconds: int) -> bool:
    """Hold ``username`` for a registration by ``email`` for ``seconds``; False if another
    address's account has it or another address's registration holds it. The same address
    may register with the same name again. One statement decides between concurrent
    registrations."""
    key, address = username_key(username), email_key(email)
    owner = await session.scalar(_USERNAME_OWNER, {"key": key})
    if owner is not None and owner != address:
        return False
    values = {"key": key, "address": address, "seconds": timedelta(seconds=seconds)}
    return await session.scalar(_HOLD, values) is not None
