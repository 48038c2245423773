"""The due set (emails announced in Redis) and the worker that takes from it, on real Redis,
PostgreSQL and an aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Any

import pytest
from arq.connections import ArqRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.jobs import (
    EmailKind,
    TestEmail,
    create_queue,
    defer_email,
    emails_doorbell,
    emails_due_key,
    enqueue_send_email,
    enqueue_send_emails,
    take_due_emails,
)
from shared.models import Email, EmailStatus
from shared.outbox import add_email
from shared.settings import Settings
from tests.support import stop_worker, wait_for
from worker.bootstrap import create_worker, worker_options
from worker.dispatch import DeliveryWorker

pytestmark = pytest.mark.usefixtures("clean_db")


async def add_emails(sessionmaker: SessionMaker, count: int) -> list[int]:
    """Committed outbox rows, not yet announced."""
    async with sessionmaker() as session, session.begin():
        return [
            await add_email(session, EmailKind.TEST, f"due{n}@example.com", TestEmail())
            for n in range(count)
        ]


def own_queue(settings: Settings) -> str:
    """A queue of the test's own (under the run's prefix, so it is cleaned up): no worker
    another test left polling the run's queue can take from it."""
    return f"{settings.QUEUE_NAME}:{uuid.uuid4().hex[:8]}"


async def statuses(sessionmaker: SessionMaker) -> dict[int, str]:
    async with sessionmaker() as session:
        rows = await session.execute(select(Email.id, Email.status))
        return {email_id: status for email_id, status in rows}


async def test_an_announcement_is_taken_once_and_keeps_its_place(
    queue: ArqRedis, settings: Settings
) -> None:
    name = own_queue(settings)
    assert await enqueue_send_email(queue, 1, queue_name=name) == f"{name}:email:1"
    assert await enqueue_send_email(queue, 2, queue_name=name)
    assert await enqueue_send_email(queue, 1, queue_name=name) is None  # already waiting

    assert await take_due_emails(queue, queue_name=name, limit=10) == [1, 2]
    assert await take_due_emails(queue, queue_name=name, limit=10) == []


async def test_one_call_announces_a_commits_emails_and_rings_once(
    queue: ArqRedis, settings: Settings
) -> None:
    name = own_queue(settings)
    await enqueue_send_email(queue, 2, queue_name=name)
    async with queue.pubsub() as pubsub:
        await pubsub.subscribe(emails_doorbell(name))
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        added = await enqueue_send_emails(
            queue, [(1, False), (2, False), (3, True)], queue_name=name
        )
        rings = [await pubsub.get_message(timeout=0.2) for _ in range(2)]
    assert added == [f"{name}:email:1", f"{name}:email:3"]  # 2 was already waiting
    assert [ring["type"] for ring in rings if ring] == ["message"]
    first, *then = await take_due_emails(queue, queue_name=name, limit=10)
    assert first == 3 and sorted(then) == [1, 2]  # the priority one first
    assert await enqueue_send_emails(queue, [], queue_name=name) == []


async def test_a_priority_email_passes_the_backlog(queue: ArqRedis, settings: Settings) -> None:
    name = own_queue(settings)
    for email_id in range(1, 51):
        await enqueue_send_email(queue, email_id, queue_name=name)
    await enqueue_send_email(queue, 99, queue_name=name, priority=True)

    first, *then = await take_due_emails(queue, queue_name=name, limit=3)
    assert first == 99
    # Announced within one millisecond, ids share a score (Redis then orders them as text).
    assert len(then) == 2 and set(then) < set(range(1, 51))


async def test_a_deferred_email_waits_for_its_time(queue: ArqRedis, settings: Settings) -> None:
    name = own_queue(settings)
    await enqueue_send_email(queue, 7, queue_name=name)
    await defer_email(queue, 7, 0.3, queue_name=name)  # moves the waiting one

    assert await take_due_emails(queue, queue_name=name, limit=10) == []
    await asyncio.sleep(0.35)
    assert await take_due_emails(queue, queue_name=name, limit=10) == [7]


async def test_concurrent_takers_never_take_the_same_email(
    queue: ArqRedis, settings: Settings
) -> None:
    """Several worker processes poll the one set: each id goes to exactly one of them."""
    name = own_queue(settings)
    for email_id in range(1, 301):
        await enqueue_send_email(queue, email_id, queue_name=name)
    takers = [create_client(settings) for _ in range(4)]
    try:
        takes = [take_due_emails(taker, queue_name=name, limit=7) for taker in takers * 12]
        batches = await asyncio.gather(*takes)
    finally:
        await asyncio.gather(*(taker.aclose() for taker in takers))
    taken = [email_id for batch in batches for email_id in batch]
    assert len(taken) == len(set(taken)) == 300  # 4 x 12 x 7 = 336 places for 300 ids


def create_client(settings: Settings) -> ArqRedis:
    return create_queue(settings.REDIS_URL)


async def test_the_worker_keeps_within_max_jobs_and_delivers_every_due_email(
    settings: Settings, sessionmaker: SessionMaker, queue: ArqRedis, smtp: MailSink
) -> None:
    ids = await add_emails(sessionmaker, 24)
    for email_id in ids:
        await enqueue_send_email(queue, email_id, queue_name=settings.QUEUE_NAME)
    smtp.delay = 0.05
    worker = create_worker(settings, burst=True, handle_signals=False, max_jobs=4)
    busiest = 0

    async def watch() -> None:
        nonlocal busiest
        while True:
            busiest = max(busiest, worker.job_counter)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        await worker.main()
    finally:
        watcher.cancel()
        await asyncio.gather(worker.close(), return_exceptions=True)

    assert sorted(message.envelope_to[0] for message in smtp.messages) == sorted(
        f"due{n}@example.com" for n in range(24)
    )
    assert set((await statuses(sessionmaker)).values()) == {EmailStatus.SENT}
    assert busiest == 4  # the limit was reached, and never passed
    assert await queue.zcard(emails_due_key(settings.QUEUE_NAME)) == 0


async def test_during_a_backlog_free_slots_are_refilled_without_waiting_for_the_poll(
    settings: Settings, sessionmaker: SessionMaker, queue: ArqRedis, smtp: MailSink
) -> None:
    """40 emails, 4 slots, a poll every 2 s: taking more only at each poll would need 10
    polls (18 s); refilled as deliveries finish, the backlog goes in one poll cycle, never
    with more than 4 in flight."""
    ids = await add_emails(sessionmaker, 40)
    for email_id in ids:
        await enqueue_send_email(queue, email_id, queue_name=settings.QUEUE_NAME)
    smtp.delay = 0.01
    worker = create_worker(settings, handle_signals=False, max_jobs=4, poll_delay=2.0)
    busiest = 0

    async def watch() -> None:
        nonlocal busiest
        while True:
            busiest = max(busiest, worker.job_counter)
            await asyncio.sleep(0.002)

    async def all_sent() -> bool:
        return set((await statuses(sessionmaker)).values()) == {EmailStatus.SENT}

    watcher = asyncio.create_task(watch())
    running = asyncio.create_task(worker.async_run())
    try:
        await wait_for(all_sent, timeout=1.9)
    finally:
        watcher.cancel()
        await stop_worker(worker, running)

    assert len(smtp.messages) == 40
    assert busiest == 4


async def listening(queue: ArqRedis, settings: Settings) -> bool:
    """Whether a worker is subscribed to the doorbell."""
    counts = dict(await queue.pubsub_numsub(emails_doorbell(settings.QUEUE_NAME)))
    return bool(counts.get(emails_doorbell(settings.QUEUE_NAME).encode()))


async def test_an_idle_worker_takes_an_announced_email_at_once_not_at_its_next_poll(
    settings: Settings, sessionmaker: SessionMaker, queue: ArqRedis, smtp: MailSink
) -> None:
    """The doorbell: with a poll every 30 s, announced emails still go out within moments,
    also after the listener's connection was cut (it reconnects; the poll covers the gap)."""
    worker = create_worker(settings, handle_signals=False, poll_delay=30.0)
    running = asyncio.create_task(worker.async_run())
    try:
        await wait_for(lambda: listening(queue, settings), timeout=10)
        await asyncio.sleep(0.2)  # the first poll has come and gone: only a ring wakes it now
        for cut in (False, True):
            if cut:
                await queue.client_kill_filter(_type="pubsub")
                await wait_for(lambda: listening(queue, settings), timeout=10)
            (email_id,) = await add_emails(sessionmaker, 1)
            sent_before = len(smtp.messages)
            started = time.monotonic()
            await enqueue_send_email(queue, email_id, queue_name=settings.QUEUE_NAME)
            await wait_for(lambda: len(smtp.messages) > sent_before, timeout=5)  # noqa: B023
            assert time.monotonic() - started < 1
    finally:
        await stop_worker(worker, running)


async def test_while_deliveries_run_rings_share_a_take(
    settings: Settings, sessionmaker: SessionMaker, queue: ArqRedis, smtp: MailSink
) -> None:
    """One ring per announcement must not mean one take per email under load: while the
    worker is busy, a ring waits WORKER_BATCH_LINGER for the rings after it."""
    ids = await add_emails(sessionmaker, 40)
    smtp.delay = 0.05
    worker = create_worker(
        settings.model_copy(update={"WORKER_BATCH_LINGER": 0.05}),
        handle_signals=False,
        poll_delay=30.0,
    )
    running = asyncio.create_task(worker.async_run())
    try:
        await wait_for(lambda: listening(queue, settings), timeout=10)
        await asyncio.sleep(0.2)  # past the first poll
        takes_before = worker.takes
        for email_id in ids:  # one ring each, 40 within ~0.2 s
            await enqueue_send_email(queue, email_id, queue_name=settings.QUEUE_NAME)
            await asyncio.sleep(0.005)
        await wait_for(lambda: len(smtp.messages) == 40, timeout=10)
    finally:
        await stop_worker(worker, running)
    assert worker.takes - takes_before <= 10


async def test_the_doorbell_listener_backs_off_while_redis_is_away(settings: Settings) -> None:
    """An outage must not become a warning every poll delay: the listener's retries back off
    (0.05, 0.1, 0.2, 0.4 s ... up to 30 s)."""
    attempts = 0

    class Away:
        def pubsub(self) -> None:
            nonlocal attempts
            attempts += 1
            raise RedisConnectionError("Connection refused")

    async def deliver(ctx: dict[str, Any], email_id: int) -> float | None:
        raise AssertionError("nothing to deliver")

    options = worker_options(settings)
    options.update(on_startup=None, on_shutdown=None, handle_signals=False, poll_delay=0.05)
    worker = DeliveryWorker(deliver_email=deliver, redis_pool=Away(), **options)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(worker._listen(), 1.0)
    assert 3 <= attempts <= 6  # one a poll delay would be 20


async def test_an_email_announced_without_a_ring_is_found_by_the_poll(
    settings: Settings, sessionmaker: SessionMaker, queue: ArqRedis, smtp: MailSink
) -> None:
    """A ring nobody heard (no worker listening then, or a listener reconnecting) costs at
    most one poll delay."""
    (email_id,) = await add_emails(sessionmaker, 1)
    worker = create_worker(settings, handle_signals=False, poll_delay=0.3)
    running = asyncio.create_task(worker.async_run())
    try:
        await wait_for(lambda: listening(queue, settings), timeout=10)
        await queue.zadd(emails_due_key(settings.QUEUE_NAME), {str(email_id): 0})  # no ring
        await wait_for(lambda: len(smtp.messages) == 1, timeout=2)
    finally:
        await stop_worker(worker, running)


async def test_a_failing_delivery_is_logged_and_the_others_go_on(
    settings: Settings, queue: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever one delivery raises, the worker's loop (which re-raises a task's error)
    keeps going and the other deliveries run."""
    delivered: list[int] = []

    async def deliver(ctx: dict[str, Any], email_id: int) -> float | None:
        if email_id == 2:
            raise RuntimeError("a bug in one delivery")
        delivered.append(email_id)
        return None

    for email_id in (1, 2, 3):
        await enqueue_send_email(queue, email_id, queue_name=settings.QUEUE_NAME)
    options = worker_options(settings)
    options.update(on_startup=None, on_shutdown=None, burst=True, handle_signals=False)
    worker = DeliveryWorker(deliver_email=deliver, **options)
    try:
        await worker.main()
    finally:
        await asyncio.gather(worker.close(), return_exceptions=True)

    assert sorted(delivered) == [1, 3]
    assert "email 2: delivery failed" in caplog.text
    assert "a bug in one delivery" in caplog.text


async def test_sigterm_lets_deliveries_in_flight_finish_and_takes_no_more(
    settings: Settings, sessionmaker: SessionMaker, queue: ArqRedis, smtp: MailSink
) -> None:
    """arq's graceful stop (job_completion_wait) covers the emails: what was taken is
    delivered and recorded; what is still waiting stays in the set for the next worker."""
    first = await add_emails(sessionmaker, 3)
    for email_id in first:
        await enqueue_send_email(queue, email_id, queue_name=settings.QUEUE_NAME)
    smtp.delay = 0.6
    worker = create_worker(settings, handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    try:
        await wait_for(lambda: worker.job_counter == 3, timeout=10)
        worker.handle_sig_wait_for_completion(signal.SIGTERM)
        later = await add_emails(sessionmaker, 2)
        for email_id in later:
            await enqueue_send_email(queue, email_id, queue_name=settings.QUEUE_NAME)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, 10)  # arq ends its loop once the deliveries are done
    finally:
        await asyncio.gather(worker.close(), return_exceptions=True)

    assert len(smtp.messages) == 3
    rows = await statuses(sessionmaker)
    assert [rows[email_id] for email_id in first] == [EmailStatus.SENT] * 3
    assert [rows[email_id] for email_id in later] == [EmailStatus.PENDING] * 2
    waiting = await queue.zrange(emails_due_key(settings.QUEUE_NAME), 0, -1)
    assert sorted(int(member) for member in waiting) == later
