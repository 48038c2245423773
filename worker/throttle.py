"""Protecting the sender's reputation: an outbound budget and a circuit breaker.

* :class:`OutboundBudget`: token buckets, one for all mail and one per recipient domain, so a
  bot-driven burst of sign-ups is smoothed out here instead of being passed on to the provider
  (which would throttle or block the sender).
* :class:`CircuitBreaker`: when the SMTP server keeps failing, stop trying for a while instead
  of burning every message's attempts against a dead server.

Both live in Redis, shared by every worker process. A deferred message keeps its attempt
count.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.batching import Coalescer

log = logging.getLogger(__name__)


# Both buckets of each message, for a batch of messages, in one atomic step on Redis's clock
# (or the caller's, in tests): the same as one call per message in a row. A bucket is a hash
# {t: tokens, ts: when}; reservations may take it below zero (they queue). KEYS[1] is the
# bucket for all mail, KEYS[2..] one recipient domain's per message; returns each message's
# wait in seconds, space-separated.
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
local waits = {}
for i = 2, #KEYS do
  local all = step(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
  local domain = step(KEYS[i], tonumber(ARGV[3]), tonumber(ARGV[4]))
  waits[#waits + 1] = tostring(math.max(all, domain))
end
return table.concat(waits, ' ')
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
        max_batch: int = 64,
        linger: float = 0.0,
    ) -> None:
        self._script = redis.register_script(_BUDGET_SCRIPT)
        self._prefix = f"{key_prefix}mail-budget:"
        self._all = (per_second, max(1.0, per_second))
        self._domain_rate = (per_domain_per_minute / 60, max(1.0, per_domain_per_minute / 4))
        self._clock = clock  # None: Redis's own clock, the one all processes share
        # Concurrent deliveries reserve together: one script call for the batch.
        self._reserve = Coalescer(self._reserve_many, max_batch=max_batch, linger=linger)

    async def _step(self, recipients: list[str], delta: int) -> list[float]:
        keys = [f"{self._prefix}all"]
        keys += [f"{self._prefix}domain:{r.rpartition('@')[2].lower()}" for r in recipients]
        args = [*self._all, *self._domain_rate, delta, self._clock() if self._clock else ""]
        try:
            answer = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            # Without Redis there are no jobs either; a message already running goes.
            log.warning("outbound budget unavailable (%s); sending", type(error).__name__)
            return [0.0] * len(recipients)
        return [float(wait) for wait in answer.split()]

    async def _reserve_many(self, recipients: list[str]) -> list[float]:
        return await self._step(recipients, -1)

    async def acquire(self, recipient: str) -> float:
        """Reserve a slot for one message: 0.0 if it may go now, else the seconds to wait
        before sending it. Reservations queue up (a bucket goes below zero), so deliveries
        that each wait their turn, in any process, still do not exceed the rate together. A
        caller that will not send the message then must :meth:`cancel`."""
        return await self._reserve(recipient)

    async def cancel(self, recipient: str) -> None:
        """Give back a slot :meth:`acquire` reserved (the message was held back instead)."""
        await self._step([recipient], 1)


# One breaker's state, a hash {failures, open_until, cooldown, trial_until}, changed
# atomically on Redis's clock (or the caller's, in tests). ARGV: op, threshold, base
# cooldown, max cooldown, trial lease, now. Returns seconds to wait (acquire; followed by
# the failure count when there are failures) or how long it stays open (0 if closed).
_BREAKER_SCRIPT = """
local now
if ARGV[6] ~= '' then
  now = tonumber(ARGV[6])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local op, threshold = ARGV[1], tonumber(ARGV[2])
local base, cap, lease = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local v = redis.call('HMGET', KEYS[1], 'failures', 'open_until', 'cooldown', 'trial_until')
local failures = tonumber(v[1]) or 0
local open_until = tonumber(v[2]) or 0
local cooldown = tonumber(v[3]) or base
local trial_until = tonumber(v[4]) or 0
local function save()
  redis.call('HSET', KEYS[1], 'failures', failures, 'open_until', tostring(open_until),
             'cooldown', tostring(cooldown), 'trial_until', tostring(trial_until))
  redis.call('EXPIRE', KEYS[1], math.ceil(cap + lease) + 3600)
end
if op == 'success' then
  redis.call('DEL', KEYS[1])
  return '0'
elseif op == 'release' then
  trial_until = 0
  save()
elseif op == 'failure' then
  local was_trial = trial_until > now
  trial_until = 0
  failures = failures + 1
  if was_trial then cooldown = math.min(cap, cooldown * 2) end
  if failures >= threshold then open_until = now + cooldown end
  save()
elseif op == 'acquire' then
  if failures == 0 then return '0' end
  if failures < threshold then return '0 ' .. failures end
  if open_until > now then return tostring(open_until - now) end
  if trial_until > now then return tostring(math.min(5, cooldown)) end
  trial_until = now + lease
  save()
  return '0 ' .. failures .. ' trial'
end
if failures >= threshold and open_until > now then return tostring(open_until - now) end
return '0'
"""


class CircuitBreaker:
    """Closed -> (``threshold`` temporary failures in a row) -> open for ``cooldown`` s ->
    half-open: one trial delivery; success closes it, failure opens it again for twice as
    long (up to ``max_cooldown``).

    Its state is in Redis, so every worker process sees the same breaker: when the SMTP
    server (or a webhook endpoint: one breaker per ``name``) fails, all of them pause, and
    one trial goes out, not one per process. A trial whose worker died lets the next one go
    after ``trial_lease`` seconds. Without Redis it lets deliveries go (there are no jobs
    without Redis anyway).
    """

    CLEAR_FOR = 1.0  # seconds a "no failures" answer is trusted

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str,
        name: str,
        threshold: int,
        cooldown: float,
        max_cooldown: float = 600.0,
        trial_lease: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._script = redis.register_script(_BREAKER_SCRIPT)
        self._key = f"{key_prefix}breaker:{name}"
        self._settings = (threshold, cooldown, max_cooldown, trial_lease)
        self._clock = clock
        self._open_until = 0.0  # as last heard, on the local monotonic clock (for metrics)
        # Whether the last acquire saw failures on record: if not, a success has nothing to
        # reset. And while nothing has failed, an acquire is answered from what Redis said
        # less than CLEAR_FOR seconds ago: healthy deliveries cost no round trip here, and
        # other processes' failures reach this one within that time.
        self._failures_seen = True
        self._clear_until = 0.0
        self._trial_held = False  # this process was granted the half-open trial

    async def _run(self, op: str) -> float:
        args = [op, *self._settings, self._clock() if self._clock else ""]
        try:
            reply = (await self._script(keys=[self._key], args=args)).decode().split()
        except (RedisError, OSError) as error:
            log.warning("circuit breaker unavailable (%s); sending", type(error).__name__)
            return 0.0
        seconds = float(reply[0])
        if op == "acquire":
            self._failures_seen = len(reply) > 1 or seconds > 0
            self._trial_held = self._trial_held or reply[-1] == "trial"
            if not self._failures_seen:
                self._clear_until = time.monotonic() + self.CLEAR_FOR
        if op != "acquire" or seconds > 5.0:
            self._open_until = time.monotonic() + seconds
        return seconds

    async def acquire(self) -> float:
        """0.0 if a delivery may be tried now, else seconds until the breaker lets one by."""
        if time.monotonic() < self._clear_until:
            return 0.0
        return await self._run("acquire")

    async def release(self) -> None:
        """Give back a granted trial that was not used (a no-op, and no round trip, unless
        this process holds it: another process's trial is not ours to end)."""
        if self._trial_held:
            self._trial_held = False
            await self._run("release")

    async def success(self) -> None:
        self._trial_held = False
        if self._failures_seen:
            await self._run("success")
            self._failures_seen = False

    async def failure(self) -> None:
        self._trial_held = False
        self._failures_seen = True
        self._clear_until = 0.0
        self._trial_held = False  # this process was granted the half-open trial
        await self._run("failure")

    @property
    def is_open(self) -> bool:
        """Whether the breaker was open when this process last asked (for metrics and logs)."""
        return self._open_until > time.monotonic()


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about ``base`` after the first failure, doubling each
    time up to ``cap``; the jitter (50-100 %) keeps a burst of failures from retrying in step."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
