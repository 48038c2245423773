"""arq's worker, which also delivers the emails waiting in the due set.

arq runs the cron jobs (sweeper, purge) and the webhook deliveries. Emails are announced as
members of a sorted set instead of one arq job each (why: :mod:`shared.jobs`); each poll of
this worker takes as many due ids as it has free job slots, in one script call, and delivers
each in a task that counts toward ``max_jobs`` exactly like a job. So there is one limit on
concurrent work, and arq's own machinery covers the emails too: the graceful stop waits for
them (``job_completion_wait``), the health check counts them, burst mode drains them.

Between polls, two things start a take at once (one taker at a time, so two never take ids
for the same slots): the doorbell, a Redis channel every announcement rings, which an idle
worker listens to (pickup within a round trip, and no need to poll often: an idle worker
polling every 20 ms spent 3 % of a core on it); and, while a backlog lasts, deliveries
finishing, so that slots are refilled as they free up rather than at the next poll (which
capped a worker at ``max_jobs`` messages per poll cycle). The poll remains the safety net:
it finds what a missed ring left (the listener reconnecting after a Redis restart), retries
coming due, and arq's own jobs.

This leans on arq internals (``_poll_iteration``, ``tasks``, ``job_counter``, ``sem``): arq is
pinned in uv.lock and in maintenance mode, and tests cover each point (burst, SIGTERM in
flight, SIGKILL). A delivery that dies with its process loses nothing: the row is still
pending in PostgreSQL, and the sweeper announces it again once its claim has run out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from signal import Signals
from typing import Any

from arq import Worker
from redis.exceptions import RedisError

from shared.jobs import defer_email, emails_doorbell, emails_due_key, take_due_emails
from shared.outages import is_unavailable
from worker.context import OUTAGES

log = logging.getLogger(__name__)

Deliver = Callable[[dict[str, Any], int], Awaitable[float | None]]
"""Deliver one outbox row; returns in how many seconds to try it again, or None."""

_EMAIL_TASK = "email:"  # prefix of the emails' keys among arq's tasks


class DeliveryWorker(Worker):
    """An :class:`arq.Worker` whose every poll also starts the due emails' deliveries."""

    def __init__(
        self, *args: Any, deliver_email: Deliver, ring_linger: float = 0.0, **kwargs: Any
    ) -> None:
        """``ring_linger``: while deliveries run, how long a ring waits for more rings to
        share its take (an idle worker takes at once)."""
        super().__init__(*args, **kwargs)
        self._deliver_email = deliver_email
        self._ring_linger = ring_linger
        self._due_key = emails_due_key(self.queue_name)
        self._task_numbers = itertools.count()
        # One taker at a time (the poll or a kick), so two never take ids for the same slots.
        self._taking = asyncio.Lock()
        self._backlog = False  # the last take filled every free slot: more may be due
        self._kicked: asyncio.Task[None] | None = None  # a take started between polls
        self._kick_again = False  # rung while that take ran: it may have missed the new id
        self._listener: asyncio.Task[None] | None = None
        # Refill in batches of a quarter of the slots: one Redis round trip per few messages.
        self._refill_at = max(1, self.max_jobs // 4)
        self.takes = 0  # how many times the due set was taken from: tests read it

    async def _poll_iteration(self) -> None:
        if self._listener is None and self.allow_pick_jobs and not self.burst:
            # Started by the first poll: by then on_startup has built what deliveries use.
            self._listener = self.loop.create_task(self._listen())
        await super()._poll_iteration()
        await self._start_due_emails()
        if self.burst:
            await self._drain_emails()

    async def _listen(self) -> None:
        """Take at once whenever the doorbell rings; across a Redis outage, start again,
        backing off up to 30 s (the poll covers the gap)."""
        pause = self.poll_delay_s
        while True:
            try:
                async with self.pool.pubsub() as pubsub:
                    await pubsub.subscribe(emails_doorbell(self.queue_name))
                    pause = self.poll_delay_s
                    self._kick()  # whatever was announced while no one listened
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._kick(wait=self._linger_if_busy())
            except (RedisError, OSError) as error:
                log.warning("email doorbell unavailable (%s); polling only", error)
            await asyncio.sleep(pause)  # never a busy loop, however it ended
            pause = min(pause * 2, 30.0)

    async def _start_due_emails(self) -> None:
        """Take as many due ids as there are free job slots and start their deliveries."""
        async with self._taking:
            free = self.max_jobs - self.job_counter
            if not self.allow_pick_jobs:
                return
            if free <= 0:
                self._backlog = True  # rung while full: take when slots free up
                return
            taken = await take_due_emails(self.pool, queue_name=self.queue_name, limit=free)
            self.takes += 1
            self._backlog = len(taken) == free
            for email_id in taken:
                await self.sem.acquire()  # free, as job_counter < max_jobs
                self.job_counter += 1
                task = self.loop.create_task(self._deliver(email_id))
                task.add_done_callback(self._delivery_done)
                # The same id may be taken twice (re-announced while its delivery runs; the
                # claim then stops the second), so each task gets a key of its own.
                self.tasks[f"{_EMAIL_TASK}{email_id}:{next(self._task_numbers)}"] = task

    def _delivery_done(self, _: asyncio.Task[None]) -> None:
        """Free the slot; during a backlog, refill once a batch of slots is free."""
        self._release_sem_dec_counter_on_complete()
        if self._backlog and self.max_jobs - self.job_counter >= self._refill_at:
            self._kick()

    def _linger_if_busy(self) -> float:
        """Under load a ring per announcement would mean a take per email (and smaller
        claim batches): while deliveries run, rings wait a moment and share a take."""
        return self._ring_linger if self.job_counter else 0.0

    def _kick(self, *, wait: float = 0.0) -> None:
        """Take due emails in a task (after ``wait`` seconds); if one is already taking,
        once more after it."""
        if not self.allow_pick_jobs:
            return
        if self._kicked is None:
            self._kicked = self.loop.create_task(self._take_now(wait))
        else:
            self._kick_again = True

    async def _take_now(self, wait: float) -> None:
        try:
            while True:
                if wait:
                    await asyncio.sleep(wait)
                self._kick_again = False
                await self._start_due_emails()
                if not self._kick_again:
                    break
                wait = self._linger_if_busy()
        except (RedisError, OSError) as error:  # the next poll tries again
            self._backlog = False
            log.warning("could not take due emails (%s)", error)
        finally:
            self._kicked = None

    def handle_sig(self, signum: Signals) -> None:
        """arq's immediate stop cancels the deliveries, whose ends must not start a take (the
        graceful stop clears ``allow_pick_jobs`` itself). A take in flight is cancelled like
        the poll: an id it took and dropped is still pending, and the sweeper finds it."""
        self.allow_pick_jobs = False
        self._stop_taking()
        super().handle_sig(signum)

    def handle_sig_wait_for_completion(self, signum: Signals) -> None:
        """The graceful stop: no more takes; one in flight finishes, and the deliveries it
        starts are waited for like the others."""
        super().handle_sig_wait_for_completion(signum)
        self._stop_listening()

    def _stop_taking(self) -> None:
        if self._kicked is not None:
            self._kicked.cancel()
        self._stop_listening()

    def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None

    async def close(self) -> None:
        self._stop_taking()
        await super().close()

    async def _deliver(self, email_id: int) -> None:
        """One delivery within the job timeout. It never raises, not even when cancelled (arq
        re-raises a task's error in its poll loop, and its close() gathers the tasks): what
        went wrong is logged, and the row's claim expires."""
        try:
            async with asyncio.timeout(self.job_timeout_s or None):
                retry_in = await self._deliver_email(self.ctx, email_id)
            if retry_in is not None:
                await defer_email(self.pool, email_id, retry_in, queue_name=self.queue_name)
        except TimeoutError:
            log.warning("email %s: delivery took over %ss; stopped", email_id, self.job_timeout_s)
        except RedisError as error:
            # The attempt is recorded on the row; the sweeper retries it when it is due.
            log.warning("email %s: could not schedule its retry (%s)", email_id, error)
        except asyncio.CancelledError:  # the worker is stopping; this task is its own owner
            log.warning("email %s: delivery stopped by shutdown; the sweeper retries it", email_id)
        except Exception as error:
            if is_unavailable(error):  # an outage, not a bug: one line for all of it
                OUTAGES.down(error)
            else:
                log.exception("email %s: delivery failed", email_id)

    async def _drain_emails(self) -> None:
        """Burst mode: deliver every email in the due set, retries included, before arq's own
        check for an empty queue ends the run."""
        while True:
            for key, task in list(self.tasks.items()):
                if key.startswith(_EMAIL_TASK) and task.done():
                    del self.tasks[key]
            running = any(key.startswith(_EMAIL_TASK) for key in self.tasks)
            if not running and not await self.pool.zcard(self._due_key):
                return
            await asyncio.sleep(self.poll_delay_s)
            await self._start_due_emails()
