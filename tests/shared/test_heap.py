"""Serving processes freeze what start-up made, so full collections stay short (shared.heap)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from arq.connections import ArqRedis

from shared.heap import freeze_startup_objects
from shared.settings import Settings
from tests.support import settings_env
from web import create_app, create_server_app
from worker.bootstrap import worker_options


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    """Each test starts and ends with nothing frozen in the test process."""
    gc.unfreeze()
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_garbage_is_collected_first_and_what_lives_is_frozen() -> None:
    garbage_a, garbage_b = Node(), Node()
    garbage_a.other, garbage_b.other = garbage_b, garbage_a  # a cycle only a collection frees
    gone = weakref.ref(garbage_a)
    del garbage_a, garbage_b
    alive = Node()
    alive.other = Node()

    frozen = freeze_startup_objects()

    assert gone() is None  # not frozen forever
    assert frozen == gc.get_freeze_count() > 1000  # the interpreter's own objects too
    for generation in range(3):  # no collection walks it now
        assert not any(item is alive for item in gc.get_objects(generation))


async def test_the_served_app_freezes_when_ready_and_the_test_app_does_not(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    async with create_app(settings).test_app():
        assert gc.get_freeze_count() == 0
    async with create_server_app().test_app():  # what `python -m web` serves
        assert gc.get_freeze_count() > 0


async def test_the_worker_process_freezes_when_started(settings: Settings, queue: ArqRedis) -> None:
    for freeze in (False, True):
        options = worker_options(settings, freeze_after_startup=freeze)
        ctx: dict[str, Any] = {"redis": queue}
        await options["on_startup"](ctx)
        try:
            assert (gc.get_freeze_count() > 0) is freeze
        finally:
            await options["on_shutdown"](ctx)
