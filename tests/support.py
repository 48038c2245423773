"""Helpers for tests: where the real services are, and small waiting utilities."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0, every: float = 0.02
) -> None:
    """Poll until ``predicate`` is true; fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


async def stop_worker(worker: Any, task: asyncio.Task[Any]) -> None:
    """Stop an arq worker started with ``async_run()`` in a task.

    arq's close() cancels the worker's job tasks and may re-raise that cancellation; running
    it through gather keeps it from cancelling the test itself.
    """
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.gather(worker.close(), return_exceptions=True)
