"""argon2id password hashing, off the event loop.

Parameters follow OWASP's argon2id recommendation (t=2, m=19 MiB, p=1): about 30 ms a hash on
this project's 2-core machines. Hashing runs in threads of its own (argon2 releases the GIL),
as many as there are cores: each holds its memory while it works, and more would only queue
for the cores.

Those threads run at a lower priority (nice +5: a quarter of a core's share against the
event loops when both want it). A hash is bulk work that takes ~20 ms whatever happens; the
event loops' work (a page, a commit, an email handed to the worker) is short and someone is
waiting on each piece. When sign-ups and sign-ins fill the cores, the kernel now runs the
short pieces first instead of slicing them between hashes, and the hashes take the rest:
as many hashes per second, and everything else stays quick (bench scenarios 4 and 12).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)
_CONCURRENCY = max(2, os.cpu_count() or 2)
NICENESS = 5  # how much nicer than the process the hashing threads are
T = TypeVar("T")
# A stored "hash" no password matches (an argon2 hash never starts with it): the password of
# an account that has none, or that "this wasn't me" made unusable.
UNUSABLE_PREFIX = "!"


def is_usable(password_hash: str) -> bool:
    """Whether some typed password could match this stored hash."""
    return bool(password_hash) and not password_hash.startswith(UNUSABLE_PREFIX)


def _lower_priority() -> None:
    """Run this thread (only this one: Linux gives each thread its own nice value) below the
    event loop. Where that is not possible the hashes simply run at the same priority."""
    try:
        thread = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, nice + NICENESS))
    except (AttributeError, OSError):
        pass


@lru_cache(maxsize=1)
def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_CONCURRENCY, "argon2", initializer=_lower_priority)


async def _in_hash_thread(work: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_threads(), work)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A real hash of a random password, so unknown accounts cost as much as known ones."""
    return HASHER.hash(os.urandom(16).hex())


async def hash_password(password: str) -> str:
    return await _in_hash_thread(lambda: HASHER.hash(password))


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

    return await _in_hash_thread(verify)


async def verify_dummy(password: str) -> None:
    """Spend the time of a real verification when there is no account: same response time
    for unknown emails and wrong passwords, so timing does not reveal who has an account."""
    await verify_password(_dummy_hash(), password)
