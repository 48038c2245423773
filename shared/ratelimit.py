"""Fixed-window rate limits in Redis, shared by every web process.

A limit that cannot reach Redis lets the request through (and logs): an outage of the limiter
must not lock everyone out of their accounts. Keys carry a digest of the subject (an address
or an email), never the raw value.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: int  # seconds until the window resets (0 when allowed)


def _key(name: str, subject: str, window: int, now: float) -> tuple[str, int]:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    start = int(now // window) * window
    return f"ratelimit:{name}:{digest}:{start}", start + window


async def hit(redis: Redis, name: str, subject: str, *, limit: int, window: int) -> Verdict:
    """Count one event; allowed while the window's count is within ``limit``."""
    now = time.time()
    key, resets_at = _key(name, subject, window, now)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window + 1)
            count, _ = await pipe.execute()
    except (RedisError, OSError) as error:
        log.warning("rate limit %s unavailable (%s); allowing", name, type(error).__name__)
        return Verdict(True, 0)
    if int(count) <= limit:
        return Verdict(True, 0)
    return Verdict(False, max(1, int(resets_at - now)))


async def peek(redis: Redis, name: str, subject: str, *, limit: int, window: int) -> Verdict:
    """Whether the limit is already used up, without counting an event."""
    now = time.time()
    key, resets_at = _key(name, subject, window, now)
    try:
        count = await redis.get(key)
    except (RedisError, OSError) as error:
        log.warning("rate limit %s unavailable (%s); allowing", name, type(error).__name__)
        return Verdict(True, 0)
    if count is None or int(count) < limit:
        return Verdict(True, 0)
    return Verdict(False, max(1, int(resets_at - now)))


async def clear(redis: Redis, name: str, subject: str, *, window: int) -> None:
    key, _ = _key(name, subject, window, time.time())
    try:
        await redis.delete(key)
    except (RedisError, OSError) as error:
        log.warning("rate limit %s unavailable (%s)", name, type(error).__name__)
