"""Coalescing concurrent calls into one batch ("group commit").

A worker runs many jobs at once, and each needs one or two tiny statements about its own
outbox row (a web process's deferred writes are the same shape: see
:mod:`shared.group_commit`). Issued separately, each costs a pool checkout, a round trip and
the data layer's per-statement work, which profiling showed to be most of a delivery's CPU. A
:class:`Coalescer` gathers the keys that jobs ask for while a statement is in flight and
sends them as the next statement: at low load every call goes out at once on its own (no
added latency), under load one statement serves a whole batch.

Jobs start one at a time (each takes a few Redis round trips in arq), so under load calls
arrive spread out rather than together. ``linger`` is how long a call waits for company when
the previous batch ended only moments ago, i.e. when the worker is busy; an isolated call
never waits.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """``await coalescer(key)`` runs ``fetch`` on a batch of keys and returns ``key``'s value.

    ``fetch(keys)`` returns one value per key, in order (keys may repeat: it decides what a
    repeat gets). If it raises, every caller in that batch gets the exception.
    """

    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[Sequence[V]]],
        *,
        max_batch: int,
        linger: float = 0.0,
    ) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        self._linger = linger
        self._last_batch_ended = -math.inf
        self._waiting: list[tuple[K, asyncio.Future[V]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, key: K) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            if loop.time() - self._last_batch_ended < self._linger:
                await asyncio.sleep(self._linger)  # busy: let the next few calls join in
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                # A caller cancelled while it waited (a job timeout) no longer wants its key:
                # claiming a row for no one would only delay that row until its lease ends.
                batch = [(key, future) for key, future in batch if not future.done()]
                if batch:
                    await self._resolve(batch)
                self._last_batch_ended = loop.time()
        finally:
            self._runner = None

    async def _resolve(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        try:
            values = await self._fetch([key for key, _ in batch])
            if len(values) != len(batch):
                raise RuntimeError(f"fetch returned {len(values)} values for {len(batch)} keys")
        except asyncio.CancelledError:
            # The runner itself was cancelled (shutdown): so is everyone still waiting.
            for _, future in batch + self._waiting:
                future.cancel()
            self._waiting.clear()
            raise
        except Exception as error:  # every caller in the batch sees it
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(value)
