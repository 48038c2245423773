"""Protecting the sender's reputation: an outbound budget and a circuit breaker.

* :class:`OutboundBudget`: token buckets, one for all mail and one per recipient domain, so a
  bot-driven burst of sign-ups is smoothed out here instead of being passed on to the provider
  (which would throttle or block the sender).
* :class:`CircuitBreaker`: when the SMTP server keeps failing, stop trying for a while instead
  of burning every message's attempts against a dead server.

Both are per worker process; a deferred message keeps its attempt count.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate  # tokens per second
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._updated) * self.rate)
        self._updated = now

    def take(self) -> float:
        """Reserve a token: 0.0 if one is available now, else the seconds until the reserved
        one will be. Reservations queue up (the count goes negative), so callers that each
        wait their turn concurrently still do not exceed the rate together."""
        self._refill()
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def give_back(self) -> None:
        """Cancel a reservation that will not be used."""
        self.tokens = min(self.burst, self.tokens + 1)


class OutboundBudget:
    def __init__(
        self,
        *,
        per_second: float,
        per_domain_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._all = TokenBucket(per_second, per_second, clock)
        self._domain_rate = per_domain_per_minute / 60
        self._domain_burst = per_domain_per_minute / 4
        self._domains: dict[str, TokenBucket] = {}

    def _domain(self, recipient: str) -> TokenBucket:
        domain = recipient.rpartition("@")[2].lower()
        bucket = self._domains.get(domain)
        if bucket is None:
            if len(self._domains) > 10_000:  # bounded memory: forget idle domains
                self._domains.clear()
            bucket = self._domains[domain] = TokenBucket(
                self._domain_rate, self._domain_burst, self._clock
            )
        return bucket

    def acquire(self, recipient: str) -> float:
        """Reserve a slot for one message: 0.0 if it may go now, else the seconds to wait
        before sending it. A caller that will not send it then must :meth:`cancel`."""
        return max(self._domain(recipient).take(), self._all.take())

    def cancel(self, recipient: str) -> None:
        """Give back a slot :meth:`acquire` reserved (the message was held back instead)."""
        self._domain(recipient).give_back()
        self._all.give_back()


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
