"""Rate limits in Redis, shared by every process, on the ``limits`` library's moving windows.

A moving window counts the events of the last ``window`` seconds, whenever "now" is: there
is no clock-aligned boundary to time a burst against, and an event refused while the limit is
used up is not recorded, so refused attempts never extend a lock. Each :meth:`Limits.hit`
checks and records in one Redis script, atomically: of many simultaneous attempts, exactly
``limit`` are let through, whatever the concurrency.

Hits that arrive while another batch of them is on its way to Redis go together, as the
next batch, in one script call (:data:`_HIT_MANY`: the library's moving-window step for each
key in turn, on the library's keys): a reset request makes two, and one round trip each was
a fifth of a web process's CPU per reset (an ablation, bench/RESULTS.md). An isolated hit
still goes at once, alone. Peeks, refusals' wait times and clearing stay with ``limits``.

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

from shared.batching import Coalescer

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


# One moving-window hit per key, in order (a key given twice counts twice), atomically: the
# step of `limits`' acquire_moving_window.lua (a list of event times per key, newest first,
# at most `limit` long) for each KEYS[i] with ARGV[2i] = limit, ARGV[2i+1] = window; ARGV[1]
# is now. Returns 1 (counted) or 0 (refused, not counted) per key.
_HIT_MANY = """
local now = tonumber(ARGV[1])
local allowed = {}
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local window = tonumber(ARGV[2 * i + 1])
    local oldest = redis.call('lindex', key, limit - 1)
    if oldest and tonumber(oldest) >= now - window then
        allowed[i] = 0
    else
        redis.call('lpush', key, now)
        redis.call('ltrim', key, 0, limit - 1)
        redis.call('expire', key, window)
        allowed[i] = 1
    end
end
return allowed
"""
MAX_BATCH = 64  # hits per script call


class Limits:
    """The process's limiter, on the Redis connection pool it already has."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        self._key_prefix = f"{key_prefix}ratelimit"
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # passed through
            key_prefix=self._key_prefix,
            wrap_exceptions=False,
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._hit_many = redis.register_script(_HIT_MANY)
        self._hits = Coalescer(self._count_many, max_batch=MAX_BATCH)

    async def hit(self, limit: Limit, subject: str) -> Verdict:
        """Count one event, unless ``limit`` is used up (then it is refused, not counted)."""
        return await self._decide(limit, subject, count=True)

    async def hit_all(self, *hits: tuple[Limit, str]) -> Verdict:
        """Count one event against each (limit, subject) in order; the first refusal, if one
        is used up (the hits after it are not counted)."""
        for limit, subject in hits:
            verdict = await self.hit(limit, subject)
            if not verdict.allowed:
                return verdict
        return Verdict(True, 0)

    async def peek(self, limit: Limit, subject: str) -> Verdict:
        """Whether one more event would be allowed, without counting one."""
        return await self._decide(limit, subject, count=False)

    def _storage_key(self, limit: Limit, subject: str) -> str:
        """The Redis key of ``subject``'s window: the one ``limits`` itself reads and writes."""
        return f"{self._key_prefix}:{limit.item().key_for(_digest(subject))}"

    async def _count_many(self, hits: list[tuple[Limit, str]]) -> list[bool]:
        keys, args = [], [time.time()]
        for limit, subject in hits:
            keys.append(self._storage_key(limit, subject))
            args += [limit.limit, limit.window]
        return [bool(allowed) for allowed in await self._hit_many(keys, args)]

    async def _decide(self, limit: Limit, subject: str, *, count: bool) -> Verdict:
        item, key = limit.item(), _digest(subject)
        try:
            if count:
                allowed = await self._hits((limit, subject))
            else:
                allowed = await self._limiter.test(item, key)
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
