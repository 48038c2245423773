"""The account statements the use cases share: look-ups, creation, the username hold, the
reset link generation and the sign-in code (the hot ones built once, their values bound
parameters)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    Integer,
    Interval,
    Row,
    String,
    Table,
    any_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import i18n
from shared.db import insert_bound
from shared.models import LoginCode, User, UsernameHold
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
# Lock the accounts in the order of their keys (the order every batch of deferred writes
# takes them in: two processes' batches cannot deadlock), then move each one's reset link
# generation on by the number of links asked for it.
_KEYS = bindparam("keys", type_=ARRAY(String))
_LOCKED_IN_KEY_ORDER = (
    select(_USERS.c.id, _USERS.c.email_key)
    .where(_USERS.c.email_key == any_(_KEYS))
    .order_by(_USERS.c.email_key)
    .with_for_update()
    .cte("locked")
)
_ASKED = select(
    func.unnest(_KEYS).label("key"),
    func.unnest(bindparam("counts", type_=ARRAY(Integer))).label("links"),
).cte("asked")
_NEXT_RESET_GENERATIONS = (
    update(_USERS)
    .where(
        _USERS.c.id == _LOCKED_IN_KEY_ORDER.c.id, _LOCKED_IN_KEY_ORDER.c.email_key == _ASKED.c.key
    )
    .values(reset_generation=_USERS.c.reset_generation + _ASKED.c.links)
    .returning(_USERS.c.id, _USERS.c.email, _USERS.c.email_key, _USERS.c.reset_generation)
)


async def next_reset_generations(session: AsyncSession, links: dict[str, int]) -> list[Row[Any]]:
    """(id, email, email_key, reset_generation) of the accounts with these email keys, each
    one's reset link generation moved on by the number of links ``links`` asks for it, in
    one statement (their rows stay locked until the transaction ends; the generations in
    between are theirs to hand out); a key with no account has no row."""
    keys = sorted(links)
    parameters = {"keys": keys, "counts": [links[key] for key in keys]}
    return list(await session.execute(_NEXT_RESET_GENERATIONS, parameters))


_IDS_BY_EMAIL_KEY = select(_USERS.c.email_key, _USERS.c.id).where(_USERS.c.email_key == any_(_KEYS))


async def ids_by_email_key(session: AsyncSession, keys: set[str]) -> dict[str, int]:
    """The ids of the accounts with these email keys, by key (none for a key with none)."""
    rows = await session.execute(_IDS_BY_EMAIL_KEY, {"keys": sorted(keys)})
    return {key: user_id for key, user_id in rows}


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
        "language",
        "time_zone",
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
        # What the registering browser speaks and where it is: emails follow from now on.
        "language": i18n.current(),
        "time_zone": i18n.current_zone(),
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


def binding_digest(binding: str) -> str:
    """What the database keeps of a browser's binding to its sign-in code."""
    return hashlib.sha256(binding.encode()).hexdigest()


async def new_login_code(session: AsyncSession, user_id: int, binding: str) -> int:
    """A new sign-in code for the account, bound to the browser holding ``binding``: its
    generation moves on (every earlier code stops working), its salt is new; the generation
    (what the email names) is returned. The caller queues the email."""
    salt = secrets.token_hex(16)
    browser = binding_digest(binding)
    generation = await session.scalar(
        insert(LoginCode)
        .values(user_id=user_id, generation=1, salt=salt, browser=browser)
        .on_conflict_do_update(
            index_elements=[LoginCode.user_id],
            set_={
                "generation": LoginCode.generation + 1,
                "salt": salt,
                "browser": browser,
                "created_at": func.now(),
            },
        )
        .returning(LoginCode.generation)
    )
    assert generation is not None
    return int(generation)
