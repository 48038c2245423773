"""argon2id password hashing, off the event loop.

Parameters follow OWASP's argon2id recommendation (t=2, m=19 MiB, p=1): about 30 ms a hash on
this project's 2-core machines. Hashing runs in a worker thread (argon2 releases the GIL) and a
semaphore bounds how many run at once, since each one holds its memory while it works.
"""

from __future__ import annotations

import asyncio
import os
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)
_CONCURRENCY = max(2, os.cpu_count() or 2)
# A stored "hash" no password matches (an argon2 hash never starts with it): the password of
# an account that has none, or that "this wasn't me" made unusable.
UNUSABLE_PREFIX = "!"


def is_usable(password_hash: str) -> bool:
    """Whether some typed password could match this stored hash."""
    return bool(password_hash) and not password_hash.startswith(UNUSABLE_PREFIX)


@lru_cache(maxsize=1)
def _semaphore() -> asyncio.Semaphore:
    return asyncio.Semaphore(_CONCURRENCY)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A real hash of a random password, so unknown accounts cost as much as known ones."""
    return HASHER.hash(os.urandom(16).hex())


async def hash_password(password: str) -> str:
    async with _semaphore():
        return await asyncio.to_thread(HASHER.hash, password)


async def verify_password(password_hash: str, password: str) -> tuple[bool, bool]:
    """(matches, needs_rehash): rehash when the stored parameters are older than HASHER's.
    An unusable hash (an account without a password) costs a real verification too, and
    matches nothing: timing must not tell who has a password."""
    usable = is_usable(password_hash)
    if not usable:
        password_hash = _dummy_hash()

    def verify() -> tuple[bool, bool]:
        try:
            HASHER.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        return usable, usable and HASHER.check_needs_rehash(password_hash)

    async with _semaphore():
        return await asyncio.to_thread(verify)


async def verify_dummy(password: str) -> None:
    """Spend the time of a real verification when there is no account: same response time
    for unknown emails and wrong passwords, so timing does not reveal who has an account."""
    await verify_password(_dummy_hash(), password)
