"""Rate limits on real Redis: batched hits count exactly, on the keys `limits` reads
(shared.ratelimit)."""

from __future__ import annotations

import asyncio

from arq import ArqRedis
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from shared.ratelimit import Limit, Limits, _digest
from shared.settings import Settings

LIMIT = Limit("test-attempts", 10, 60)


async def script_calls(redis: ArqRedis) -> int:
    stats = await redis.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


async def test_of_many_hits_at_once_exactly_the_limit_count_in_few_script_calls(
    settings: Settings, queue: ArqRedis
) -> None:
    limits = Limits(queue, key_prefix=settings.REDIS_KEY_PREFIX)
    await limits.clear(LIMIT, "alice@example.com")
    before = await script_calls(queue)
    verdicts = await asyncio.gather(*(limits.hit(LIMIT, "alice@example.com") for _ in range(50)))
    calls = await script_calls(queue) - before
    assert sum(verdict.allowed for verdict in verdicts) == 10
    assert all(0 < verdict.retry_after <= 60 for verdict in verdicts if not verdict.allowed)
    assert calls <= 2 + 40  # two batches for the hits; one window-stats call per refusal
    others = await asyncio.gather(*(limits.hit(LIMIT, f"user{n}@example.com") for n in range(20)))
    assert all(verdict.allowed for verdict in others)  # each subject has a window of its own


async def test_batched_hits_share_their_windows_with_the_limits_library(
    settings: Settings, queue: ArqRedis
) -> None:
    """The library's peek, clear and own hits see what the batched hits counted (the same
    keys and layout), so a change in either cannot split one limit into two."""
    limits = Limits(queue, key_prefix=settings.REDIS_KEY_PREFIX)
    subject = "bob@example.com"
    await limits.clear(LIMIT, subject)
    for _ in range(9):
        assert (await limits.hit(LIMIT, subject)).allowed
    assert (await limits.peek(LIMIT, subject)).allowed
    storage = RedisStorage(
        "async+redis://",
        implementation="redispy",
        connection_pool=queue.connection_pool,
        key_prefix=f"{settings.REDIS_KEY_PREFIX}ratelimit",
        wrap_exceptions=False,
    )
    library = MovingWindowRateLimiter(storage)
    assert await library.hit(LIMIT.item(), _digest(subject))  # the tenth, by the library
    assert not (await limits.peek(LIMIT, subject)).allowed
    refused = await limits.hit(LIMIT, subject)
    assert not refused.allowed and refused.retry_after > 0
    stats = await library.get_window_stats(LIMIT.item(), _digest(subject))
    assert stats.remaining == 0
    await limits.clear(LIMIT, subject)
    assert (await limits.hit(LIMIT, subject)).allowed


async def test_hits_are_allowed_while_redis_is_unreachable() -> None:
    from redis.asyncio import Redis

    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        limits = Limits(unreachable, key_prefix="test:")
        verdicts = await asyncio.gather(*(limits.hit(LIMIT, "carol@example.com") for _ in range(3)))
    finally:
        await unreachable.aclose()
    assert all(verdict.allowed for verdict in verdicts)
