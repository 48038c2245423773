"""Outbound budget and circuit breaker: unit tests on a controlled clock, and the worker
holding mail back without spending attempts."""

from __future__ import annotations

import asyncio

import pytest
from arq.connections import ArqRedis
from sqlalchemy import select

from devstack.mailsink import MailSink, free_port
from shared.db import SessionMaker
from shared.jobs import EmailKind, TestEmail
from shared.models import Email, EmailStatus
from shared.outbox import add_email, transaction
from shared.settings import Settings
from tests.support import stop_worker, wait_for
from worker.bootstrap import create_worker
from worker.throttle import CircuitBreaker, OutboundBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budgets(
    queue: ArqRedis,
    settings: Settings,
    clock: Clock,
    count: int,
    *,
    per_second: float,
    per_domain_per_minute: float,
) -> list[OutboundBudget]:
    """``count`` budgets on the same Redis, as ``count`` worker processes would have."""
    return [
        OutboundBudget(queue, key_prefix=settings.REDIS_KEY_PREFIX, clock=clock,
                       per_second=per_second, per_domain_per_minute=per_domain_per_minute)
        for _ in range(count)
    ]  # fmt: skip


async def test_budget_per_domain_and_overall(queue: ArqRedis, settings: Settings) -> None:
    clock = Clock()
    (budget,) = budgets(queue, settings, clock, 1, per_second=100, per_domain_per_minute=60)
    # A domain gets a burst of a quarter of its minute, then one a second.
    assert [await budget.acquire(f"u{n}@example.com") for n in range(15)] == [0.0] * 15
    assert await budget.acquire("late@example.com") == 1.0
    assert await budget.acquire("someone@other.example") == 0.0  # other domains go on
    clock.now += 1
    assert await budget.acquire("next@EXAMPLE.com") == 1.0  # "late" took the slot that came free

    # Overall: ten a second across all domains.
    await queue.delete(*await queue.keys(f"{settings.REDIS_KEY_PREFIX}mail-budget:*"))
    (overall,) = budgets(queue, settings, clock, 1, per_second=10, per_domain_per_minute=600)
    assert [await overall.acquire(f"x@d{n}.example") for n in range(10)] == [0.0] * 10
    assert await overall.acquire("x@d10.example") == pytest.approx(0.1)


async def test_the_budget_holds_in_total_across_worker_processes(
    queue: ArqRedis, settings: Settings
) -> None:
    """Three workers on one Redis share one budget: concurrent deliveries in all of them get
    successive slots, so the configured rate is the total, not three times it."""
    clock = Clock()
    three = budgets(queue, settings, clock, 3, per_second=10, per_domain_per_minute=6000)
    waits = await asyncio.gather(*(three[n % 3].acquire(f"u{n}@d{n}.example") for n in range(30)))
    assert sorted(waits) == pytest.approx([0.0] * 10 + [n / 10 for n in range(1, 21)])

    # A message held back instead of waiting gives its slot back to the next one.
    await three[0].cancel("u29@d29.example")
    await three[1].cancel("u28@d28.example")
    assert await three[2].acquire("again@d0.example") == pytest.approx(1.9)


async def test_without_redis_the_budget_lets_mail_go(settings: Settings) -> None:
    from shared.jobs import create_queue

    unreachable = create_queue(f"redis://127.0.0.1:{free_port()}/0")
    try:
        (budget,) = budgets(unreachable, settings, Clock(), 1, per_second=1,
                            per_domain_per_minute=1)  # fmt: skip
        assert await budget.acquire("a@example.com") == 0.0
    finally:
        await unreachable.aclose()


def breaker(queue: ArqRedis, settings: Settings, clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(queue, key_prefix=settings.REDIS_KEY_PREFIX, name="smtp",
                          threshold=3, cooldown=30, clock=clock)  # fmt: skip


async def test_breaker_opens_after_repeated_failures_and_half_opens(
    queue: ArqRedis, settings: Settings
) -> None:
    clock = Clock()
    one = breaker(queue, settings, clock)
    for _ in range(2):
        assert await one.acquire() == 0.0
        await one.failure()
    assert await one.acquire() == 0.0
    await one.failure()
    assert one.is_open
    assert await one.acquire() == 30.0
    clock.now += 30
    assert await one.acquire() == 0.0  # one trial
    assert await one.acquire() > 0  # and only one
    await one.failure()  # the trial failed: open again, for longer
    assert await one.acquire() == 60.0
    clock.now += 60
    assert await one.acquire() == 0.0
    await one.success()
    assert [await one.acquire() for _ in range(3)] == [0.0] * 3


async def test_the_breaker_is_one_for_every_worker_process(
    queue: ArqRedis, settings: Settings
) -> None:
    """Failures seen by three processes add up; once open, all of them pause and exactly
    one trial goes out; its success closes the breaker for all."""
    clock = Clock()
    a, b, c = (breaker(queue, settings, clock) for _ in range(3))
    for handle in (a, b, c):
        assert await handle.acquire() == 0.0
        await handle.failure()
    assert [await handle.acquire() for handle in (a, b, c)] == [30.0] * 3
    clock.now += 30
    trials = [await handle.acquire() for handle in (a, b, c)]
    assert sorted(trials) == [0.0, 5.0, 5.0]  # one trial, the others wait
    await a.success()
    assert [await handle.acquire() for handle in (a, b, c)] == [0.0] * 3
    # A trial whose worker died does not hold the others back for ever.
    for handle in (a, b, c):
        await handle.failure()
    clock.now += 30
    assert await a.acquire() == 0.0  # a takes the trial, then dies
    clock.now += 61
    assert await b.acquire() == 0.0


async def test_worker_holds_mail_back_without_spending_attempts(
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    settings: Settings,
    smtp: MailSink,
    clean_db: None,
) -> None:
    limited = settings.with_values(MAIL_DOMAIN_RATE_PER_MINUTE=6)  # a burst of 1, then 1/10 s
    async with transaction(sessionmaker, queue, queue_name=limited.QUEUE_NAME) as session:
        for to in ("a@example.com", "b@example.com", "c@example.com", "d@other.example"):
            await add_email(session, EmailKind.TEST, to, TestEmail())
    worker = create_worker(limited, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        await wait_for(lambda: len(smtp.messages) == 2, timeout=10)
        await asyncio.sleep(0.5)  # the held messages stay held
    finally:
        await stop_worker(worker, task)
    assert sorted(m.envelope_to[0] for m in smtp.messages)[1] == "d@other.example"
    async with sessionmaker() as session:
        held = list(await session.scalars(select(Email).where(Email.status == "pending")))
    assert len(held) == 2
    assert [email.attempts for email in held] == [0, 0]


async def test_breaker_stops_burning_attempts_on_a_dead_server(
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    settings: Settings,
    clean_db: None,
) -> None:
    dead = settings.with_values(
        MAIL_PORT=free_port(),
        MAIL_BREAKER_THRESHOLD=3,
        MAIL_BREAKER_COOLDOWN=60,
        MAIL_RETRY_BASE_DELAY=0.1,
        MAIL_RETRY_MAX_DELAY=0.2,
    )
    async with transaction(sessionmaker, queue, queue_name=dead.QUEUE_NAME) as session:
        for n in range(8):
            await add_email(session, EmailKind.TEST, f"u{n}@example.com", TestEmail())
    worker = create_worker(dead, handle_signals=False, max_jobs=1)
    task = asyncio.create_task(worker.async_run())
    try:

        async def all_tried_or_held() -> bool:
            async with sessionmaker() as session:
                rows = list(await session.scalars(select(Email)))
            return sum(row.attempts for row in rows) >= 3 and all(
                row.next_attempt_at > row.created_at for row in rows
            )

        await wait_for(all_tried_or_held, timeout=15)
        await asyncio.sleep(0.5)
    finally:
        await stop_worker(worker, task)
    async with sessionmaker() as session:
        rows = list(await session.scalars(select(Email)))
    assert sum(row.attempts for row in rows) == 3  # then the breaker held the rest back
    assert {row.status for row in rows} == {EmailStatus.PENDING}


async def test_concurrent_reservations_go_out_as_one_script_call(
    queue: ArqRedis, settings: Settings
) -> None:
    """Deliveries that reserve at the same time share one round trip, with the same result
    as reserving one after another."""
    clock = Clock()
    (budget,) = budgets(queue, settings, clock, 1, per_second=5, per_domain_per_minute=6000)
    batches: list[int] = []
    script = budget._script

    async def counted(*, keys: list[str], args: list[object]) -> object:
        batches.append(len(keys) - 1)  # one key is the overall bucket
        return await script(keys=keys, args=args)

    budget._script = counted  # type: ignore[assignment]
    waits = await asyncio.gather(*(budget.acquire(f"u{n}@d{n}.example") for n in range(12)))
    assert waits == pytest.approx([0.0] * 5 + [n / 5 for n in range(1, 8)])
    assert batches == [12]
