"""Protecting the sender's reputation: an outbound budget and a circuit breaker.

* :class:`OutboundBudget`: token buckets, one for all mail and one per recipient domain, so a
  bot-driven burst of sign-ups is smoothed out here instead of being passed on to the provider
  (which would throttle or block the sender).
* :class:`CircuitBreaker`: when the SMTP server keeps failing, stop trying for a while instead
  of burning every message's attempts against a dead server.

The budget lives in Redis, shared by every worker process; a breaker is per process. A
deferred message keeps its attempt count.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


# Both buckets of one message in one atomic step, on Redis's clock (or the caller's, in tests).
# A bucket is a hash {t: tokens, ts: when}; reservations may take it below zero (they queue).
_BUDGET_SCRIPT = """
local now
if ARGV[6] ~= '' then
  now = tonumber(ARGV[6])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local delta = tonumber(ARGV[5])
local function step(key, rate, burst)
  local v = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(v[1]) or burst
  local since = now - (tonumber(v[2]) or now)
  if since < 0 then since = 0 end
  tokens = math.min(burst, tokens + since * rate) + delta
  if tokens > burst then tokens = burst end
  redis.call('HSET', key, 't', tostring(tokens), 'ts', tostring(now))
  redis.call('EXPIRE', key, math.ceil((burst - tokens) / rate) + 60)
  if tokens >= 0 then return 0 end
  return -tokens / rate
end
local all = step(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
local domain = step(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
return tostring(math.max(all, domain))
"""


class OutboundBudget:
    """Token buckets in Redis, one for all mail and one per recipient domain, shared by every
    worker process (and machine) on the same Redis: the configured rate holds in total."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str,
        per_second: float,
        per_domain_per_minute: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._script = redis.register_script(_BUDGET_SCRIPT)
        self._prefix = f"{key_prefix}mail-budget:"
        self._all = (per_second, max(1.0, per_second))
        self._domain_rate = (per_domain_per_minute / 60, max(1.0, per_domain_per_minute / 4))
        self._clock = clock  # None: Redis's own clock, the one all processes share

    async def _step(self, recipient: str, delta: int) -> float:
        domain = recipient.rpartition("@")[2].lower()
        keys = [f"{self._prefix}all", f"{self._prefix}domain:{domain}"]
        args = [*self._all, *self._domain_rate, delta, self._clock() if self._clock else ""]
        try:
            return float(await self._script(keys=keys, args=args))
        except (RedisError, OSError) as error:
            # Without Redis there are no jobs either; a message already running goes.
            log.warning("outbound budget unavailable (%s); sending", type(error).__name__)
            return 0.0

    async def acquire(self, recipient: str) -> float:
        """Reserve a slot for one message: 0.0 if it may go now, else the seconds to wait
        before sending it. Reservations queue up (a bucket goes below zero), so deliveries
        that each wait their turn, in any process, still do not exceed the rate together. A
        caller that will not send the message then must :meth:`cancel`."""
        return await self._step(recipient, -1)

    async def cancel(self, recipient: str) -> None:
        """Give back a slot :meth:`acquire` reserved (the message was held back instead)."""
        await self._step(recipient, 1)


class CircuitBreaker:
    """Closed -> (``threshold`` temporary failures in a row) -> open for ``cooldown`` s ->
    half-open: one trial delivery; success closes it, failure opens it again for twice as
    long (up to ``max_cooldown``)."""

    def __init__(
        self,
        *,
        threshold: int,
        cooldown: float,
        max_cooldown: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._clock = clock
        self.failures = 0
        self.cooldown = cooldown
        self.open_until = 0.0
        self._trial_running = False

    def acquire(self) -> float:
        """0.0 if a delivery may be tried now, else seconds until the breaker lets one by."""
        if self.failures < self.threshold:
            return 0.0
        remaining = self.open_until - self._clock()
        if remaining > 0:
            return remaining
        if self._trial_running:
            return min(5.0, self.cooldown)
        self._trial_running = True  # half-open: exactly one trial
        return 0.0

    def release(self) -> None:
        """Give back a granted trial that was not used."""
        self._trial_running = False

    def success(self) -> None:
        self.failures = 0
        self.cooldown = self.base_cooldown
        self._trial_running = False

    def failure(self) -> None:
        was_trial = self._trial_running
        self._trial_running = False
        self.failures += 1
        if was_trial:
            self.cooldown = min(self.max_cooldown, self.cooldown * 2)
        if self.failures >= self.threshold:
            self.open_until = self._clock() + self.cooldown

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold and self.open_until > self._clock()


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about ``base`` after the first failure, doubling each
    time up to ``cap``; the jitter (50-100 %) keeps a burst of failures from retrying in step."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
