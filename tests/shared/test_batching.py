"""The coalescer that lets concurrent jobs share one statement."""

from __future__ import annotations

import asyncio

import pytest

from shared.batching import Coalescer


class Recorder:
    """A fetch that records its batches and takes a moment, like a database round trip."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on

    async def __call__(self, keys: list[int]) -> list[int]:
        self.batches.append(list(keys))
        await asyncio.sleep(0.01)
        if self.fail_on in keys:
            raise LookupError(f"no {self.fail_on}")
        return [key * 10 for key in keys]


async def test_a_lone_call_goes_out_at_once_on_its_own() -> None:
    fetch = Recorder()
    coalescer = Coalescer(fetch, max_batch=8)
    assert await asyncio.wait_for(coalescer(7), timeout=1) == 70
    assert fetch.batches == [[7]]


async def test_calls_made_while_a_statement_runs_share_the_next_one() -> None:
    fetch = Recorder()
    coalescer = Coalescer(fetch, max_batch=100)
    first = asyncio.create_task(coalescer(1))
    await asyncio.sleep(0)  # the first batch is now in flight
    rest = [asyncio.create_task(coalescer(key)) for key in range(2, 12)]

    assert await asyncio.gather(first, *rest) == [key * 10 for key in range(1, 12)]
    assert fetch.batches == [[1], list(range(2, 12))]


async def test_batches_are_bounded() -> None:
    fetch = Recorder()
    coalescer = Coalescer(fetch, max_batch=4)
    results = await asyncio.gather(*(coalescer(key) for key in range(10)))
    assert results == [key * 10 for key in range(10)]
    assert [len(batch) for batch in fetch.batches] == [4, 4, 2]


async def test_a_failed_batch_fails_its_callers_only() -> None:
    fetch = Recorder(fail_on=3)
    coalescer = Coalescer(fetch, max_batch=3)
    results = await asyncio.gather(*(coalescer(key) for key in range(6)), return_exceptions=True)
    assert results[:3] == [0, 10, 20]
    assert [type(result) for result in results[3:]] == [LookupError] * 3
    # And the coalescer still works afterwards.
    assert await coalescer(9) == 90


async def test_a_cancelled_caller_does_not_break_the_batch() -> None:
    fetch = Recorder()
    coalescer = Coalescer(fetch, max_batch=10)
    first = asyncio.create_task(coalescer(1))
    await asyncio.sleep(0)
    doomed = asyncio.create_task(coalescer(2))
    survivor = asyncio.create_task(coalescer(3))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await first == 10
    assert await survivor == 30
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert fetch.batches == [[1], [3]]  # the cancelled caller's key was not fetched


async def test_a_fetch_returning_the_wrong_number_of_values_is_an_error() -> None:
    async def short(keys: list[int]) -> list[int]:
        return keys[:-1]

    coalescer = Coalescer(short, max_batch=10)
    with pytest.raises(RuntimeError, match="1 values for 2 keys"):
        await asyncio.gather(coalescer(1), coalescer(2))


async def test_when_busy_a_call_lingers_for_company_and_an_isolated_one_does_not() -> None:
    fetch = Recorder()
    coalescer = Coalescer(fetch, max_batch=100, linger=0.05)
    loop = asyncio.get_running_loop()

    started = loop.time()
    await coalescer(1)  # nothing ran before: goes out at once
    assert loop.time() - started < 0.04

    # Right after a batch (the worker is busy), calls spread over 30 ms share one statement.
    async def later(key: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return await coalescer(key)

    results = await asyncio.gather(*(later(key, key * 0.01) for key in range(2, 5)))
    assert results == [20, 30, 40]
    assert fetch.batches == [[1], [2, 3, 4]]

    await asyncio.sleep(0.1)  # idle again
    started = loop.time()
    await coalescer(5)
    assert loop.time() - started < 0.04
