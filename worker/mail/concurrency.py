"""How many connections a mail provider gets at once, found by the worker itself.

A fixed pool is wrong for nearly every provider: too small for a slow one (eight connections
at 300 ms a message deliver ~26 messages a second, whatever the demand), too large for one
that allows a handful of connections per client (each extra connection is refused, and
its message waits for a retry). :class:`AdaptiveLimit` starts at ``MAIL_POOL_SIZE`` and,
as TCP does with its window:

* **grows while messages wait for a connection**: by one per delivered message at first
  (doubling every round trip: slow start), by one per round of deliveries after the provider
  first pushed back (additive increase); never past ``MAIL_MAX_CONNECTIONS``;
* **halves when the provider pushes back** on a message (a 4xx reply such as 421 or 451:
  too many messages, try later): multiplicative decrease;
* **stops where the provider refuses another connection** (421 at the greeting, or the
  connection refused): the connections open at that moment are what it allows, and the
  limit stays there for ``hold`` seconds before probing again;
* **backs off a little when latency climbs** well above what the provider does unloaded
  (the lowest smoothed latency seen): more connections would only queue at the provider.

It is arithmetic only; :class:`worker.mail.smtp.SMTPPool` reports to it and asks it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

SMOOTHING = 0.2  # weight of the newest latency in the moving average
CROWDED = 2.5  # latency this many times the unloaded one: the provider is queueing us
EASE = 0.9  # the limit's factor when it is


@dataclass
class AdaptiveLimit:
    initial: int
    maximum: int
    hold: float = 300.0  # seconds a refused connection caps the limit
    clock: Callable[[], float] = time.monotonic
    limit: float = field(init=False)
    slow_start: bool = field(init=False, default=True)
    smoothed: float | None = field(init=False, default=None)
    unloaded: float | None = field(init=False, default=None)
    _ceiling: int | None = field(init=False, default=None)
    _ceiling_until: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.maximum = max(1, self.maximum)
        self.initial = max(1, min(self.initial, self.maximum))
        self.limit = float(self.initial)

    @property
    def current(self) -> int:
        """Connections allowed now."""
        return max(1, min(int(self.limit), self.cap))

    @property
    def cap(self) -> int:
        if self._ceiling is not None and self.clock() < self._ceiling_until:
            return self._ceiling
        self._ceiling = None
        return self.maximum

    def delivered(self, latency: float, *, waiting: bool) -> None:
        """A message went through in ``latency`` seconds; ``waiting``: others were waiting
        for a connection meanwhile (the demand is there)."""
        if self.smoothed is None:
            self.smoothed = latency
        else:
            self.smoothed += SMOOTHING * (latency - self.smoothed)
        if self.unloaded is None or self.smoothed < self.unloaded:
            self.unloaded = self.smoothed
        else:  # drift up slowly: a provider that got slower for good is the new normal
            self.unloaded += 0.002 * (self.smoothed - self.unloaded)
        if self.smoothed > CROWDED * self.unloaded and self.limit > self.initial:
            self.limit = max(float(self.initial), self.limit * EASE)
            self.slow_start = False
            return
        if not waiting or self.limit >= self.cap:
            return
        self.limit = min(float(self.cap), self.limit + (1.0 if self.slow_start else 1 / self.limit))

    def pushed_back(self) -> None:
        """The provider answered a message with a temporary refusal (4xx)."""
        self.limit = max(1.0, self.limit / 2)
        self.slow_start = False

    def refused_connection(self, open_now: int) -> None:
        """The provider refused one more connection while ``open_now`` were open: that is
        what it allows, for a while."""
        self._ceiling = max(1, open_now)
        self._ceiling_until = self.clock() + self.hold
        self.limit = min(self.limit, float(self._ceiling))
        self.slow_start = False
