"""Rate limits in Redis, shared by every process, on the ``limits`` library's moving windows.

A moving window counts the events of the last ``window`` seconds, whenever "now" is: there
is no clock-aligned boundary to time a burst against, and an event refused while the limit is
used up is not recorded, so refused attempts never extend a lock. Each :meth:`Limits.hit`
checks and records in one Redis script, atomically: of many simultaneous attempts, exactly
``limit`` are let through, whatever the concurrency.

A limit that cannot reach Redis lets the request through (and logs): an outage of the limiter
must not lock everyone out of their accounts. Keys carry a digest of the subject (an address
or an email), never the raw value.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: int  # seconds until the next event would be allowed (0 when allowed)


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``limit`` events per ``window`` seconds for each subject of ``name``."""

    name: str
    limit: int
    window: int

    def item(self) -> RateLimitItemPerSecond:
        return RateLimitItemPerSecond(self.limit, self.window, namespace=self.name)


def _digest(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()[:32]


class Limits:
    """The process's limiter, on the Redis connection pool it already has."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # passed through
            key_prefix=f"{key_prefix}ratelimit",
            wrap_exceptions=False,
        )
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, limit: Limit, subject: str) -> Verdict:
        """Count one event, unless ``limit`` is used up (then it is refused, not counted)."""
        return await self._decide(limit, subject, count=True)

    async def peek(self, limit: Limit, subject: str) -> Verdict:
        """Whether one more event would be allowed, without counting one."""
        return await self._decide(limit, subject, count=False)

    async def _decide(self, limit: Limit, subject: str, *, count: bool) -> Verdict:
        item, key = limit.item(), _digest(subject)
        try:
            allowed = await (self._limiter.hit if count else self._limiter.test)(item, key)
            if allowed:
                return Verdict(True, 0)
            stats = await self._limiter.get_window_stats(item, key)
        except (RedisError, OSError) as error:
            log.warning(
                "rate limit %s unavailable (%s); allowing", limit.name, type(error).__name__
            )
            return Verdict(True, 0)
        return Verdict(False, max(1, int(stats.reset_time - time.time() + 0.999)))

    async def clear(self, limit: Limit, subject: str) -> None:
        try:
            await self._limiter.clear(limit.item(), _digest(subject))
        except (RedisError, OSError) as error:
            log.warning("rate limit %s unavailable (%s)", limit.name, type(error).__name__)
