"""arq's worker, which also delivers the emails waiting in the due set.

arq runs the cron jobs (sweeper, purge) and the webhook deliveries. Emails are announced as
members of a sorted set instead of one arq job each (why: :mod:`shared.jobs`); each poll of
this worker takes as many due ids as it has free job slots, in one script call, and delivers
each in a task that counts toward ``max_jobs`` exactly like a job. So there is one limit on
concurrent work, and arq's own machinery covers the emails too: the graceful stop waits for
them (``job_completion_wait``), the health check counts them, burst mode drains them.

While a backlog lasts, slots are refilled as deliveries finish rather than at the next poll:
waiting for the poll capped a worker at ``max_jobs`` messages per poll cycle (64 per ~40 ms,
about 1,600/s), with its SMTP connections idle for part of every cycle.

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

from shared.jobs import defer_email, emails_due_key, take_due_emails

log = logging.getLogger(__name__)

Deliver = Callable[[dict[str, Any], int], Awaitable[float | None]]
"""Deliver one outbox row; returns in how many seconds to try it again, or None."""

_EMAIL_TASK = "email:"  # prefix of the emails' keys among arq's tasks


class DeliveryWorker(Worker):
    """An :class:`arq.Worker` whose every poll also starts the due emails' deliveries."""

    def __init__(self, *args: Any, deliver_email: Deliver, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deliver_email = deliver_email
        self._due_key = emails_due_key(self.queue_name)
        self._task_numbers = itertools.count()
        # One taker at a time (a poll or a refill), so two never take ids for the same slots.
        self._taking = asyncio.Lock()
        self._backlog = False  # the last take filled every free slot: more may be due
        self._refill: asyncio.Task[None] | None = None
        # Refill in batches of a quarter of the slots: one Redis round trip per few messages.
        self._refill_at = max(1, self.max_jobs // 4)

    async def _poll_iteration(self) -> None:
        await super()._poll_iteration()
        await self._start_due_emails()
        if self.burst:
            await self._drain_emails()

    async def _start_due_emails(self) -> None:
        """Take as many due ids as there are free job slots and start their deliveries."""
        async with self._taking:
            free = self.max_jobs - self.job_counter
            if not self.allow_pick_jobs or free <= 0:
                return
            taken = await take_due_emails(self.pool, queue_name=self.queue_name, limit=free)
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
        if (
            self._backlog
            and self._refill is None
            and self.allow_pick_jobs
            and self.max_jobs - self.job_counter >= self._refill_at
        ):
            self._refill = self.loop.create_task(self._refill_slots())

    def handle_sig(self, signum: Signals) -> None:
        """arq's immediate stop cancels the deliveries, whose ends must not start a refill
        (the graceful stop clears ``allow_pick_jobs`` itself). A refill in flight is cancelled
        like the poll: an id it took and dropped is still pending, and the sweeper finds it."""
        self.allow_pick_jobs = False
        if self._refill is not None:
            self._refill.cancel()
        super().handle_sig(signum)

    async def _refill_slots(self) -> None:
        try:
            await self._start_due_emails()
        except RedisError as error:  # the next poll tries again
            self._backlog = False
            log.warning("could not take due emails (%s)", error)
        finally:
            self._refill = None

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
        except Exception:
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
