"""Password hashing: argon2id off the event loop, in threads that yield the cores to the
event loops when both want them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from shared.passwords import NICENESS, hash_password, verify_password


def _thread_nice_values() -> dict[int, int]:
    """Each thread of this process and its nice value (field 19 of /proc/.../stat)."""
    values = {}
    for task in Path("/proc/self/task").iterdir():
        stat = (task / "stat").read_text()
        values[int(task.name)] = int(stat[stat.rindex(")") + 2 :].split()[16])
    return values


async def test_a_hash_verifies_and_a_wrong_password_does_not() -> None:
    stored = await hash_password("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await verify_password(stored, "correct horse battery") == (True, False)
    assert await verify_password(stored, "wrong horse battery") == (False, False)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
async def test_hashing_threads_run_below_the_event_loop() -> None:
    await hash_password("correct horse battery")
    values = _thread_nice_values()
    loop = values[os.getpid()]  # the main thread runs the event loop
    assert min(19, loop + NICENESS) in values.values()  # a hashing thread, lowered
    assert max(values.values()) <= min(19, loop + NICENESS)
