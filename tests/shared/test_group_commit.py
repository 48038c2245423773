"""Deferred writes that arrive together commit together, on real connections: one
transaction for a burst, each write in its caller's context, rows locked in key order, and
one write's failure costing the others nothing."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.db import SessionMaker
from shared.group_commit import Work
from shared.jobs import EmailKind, emails_due_key
from shared.models import Email, SecurityEvent, User
from shared.services import passwords
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.settings import Settings
from tests.support import add_accounts, committing_context

BURST = 30
WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who")


@pytest.fixture
async def ctx(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    clean_db: None,
) -> ServiceContext:
    return committing_context(settings, engine, sessionmaker, queue)


def event(user_id: int) -> SecurityEvent:
    return SecurityEvent(
        user_id=user_id, kind=Kind.LOGIN_FAILED.value, client_address="10.0.0.1", device="test"
    )


def event_for(user_id: int, transactions: list[int] | None = None) -> Work:
    """A deferred write: a security event for ``user_id`` (noting its transaction's id)."""

    async def work(session: AsyncSession) -> None:
        if transactions is not None:
            transactions.append(await session.scalar(text("SELECT txid_current()")))
        session.add(event(user_id))
        await session.flush()

    return work


async def events_of(sessionmaker: SessionMaker) -> list[int]:
    async with sessionmaker() as session:
        return sorted(
            user_id or 0 for user_id in await session.scalars(select(SecurityEvent.user_id))
        )


async def test_a_lone_write_commits_at_once(
    ctx: ServiceContext, sessionmaker: SessionMaker
) -> None:
    (user_id,) = await add_accounts(sessionmaker, ["user0@example.com"])
    await asyncio.wait_for(ctx.commit_together(event_for(user_id)), timeout=5)
    assert await events_of(sessionmaker) == [user_id]


async def test_writes_arriving_together_share_a_transaction(
    ctx: ServiceContext, sessionmaker: SessionMaker
) -> None:
    user_ids = await add_accounts(sessionmaker, [f"user{n}@example.com" for n in range(BURST)])
    transactions: list[int] = []
    await asyncio.gather(*(ctx.commit_together(event_for(u, transactions)) for u in user_ids))
    assert await events_of(sessionmaker) == sorted(user_ids)
    # The first goes out alone, at once; the rest arrive while it commits and share the next.
    assert len(transactions) == BURST
    assert len(set(transactions)) <= 3


async def test_one_failing_write_costs_the_others_nothing(
    ctx: ServiceContext, sessionmaker: SessionMaker
) -> None:
    user_ids = await add_accounts(sessionmaker, [f"user{n}@example.com" for n in range(6)])

    async def fails(session: AsyncSession) -> None:
        session.add(event(user_ids[0]))
        await session.flush()
        raise ValueError("this one is broken")

    first = asyncio.create_task(ctx.commit_together(event_for(user_ids[1])))
    await asyncio.sleep(0)  # in flight: the next five make one batch
    outcomes = await asyncio.gather(
        ctx.commit_together(fails),
        *(ctx.commit_together(event_for(u)) for u in user_ids[2:]),
        return_exceptions=True,
    )
    await first
    assert isinstance(outcomes[0], ValueError)
    assert outcomes[1:] == [None] * 4
    # The failing write's own row was rolled back with it; every other write committed.
    assert await events_of(sessionmaker) == sorted(user_ids[1:])


async def test_each_write_runs_in_its_callers_context(ctx: ServiceContext) -> None:
    seen: dict[str, str] = {}

    async def caller(name: str) -> None:
        WHO.set(name)

        async def work(session: AsyncSession) -> None:
            await session.scalar(text("SELECT 1"))
            seen[name] = WHO.get()

        await ctx.commit_together(work)

    await asyncio.gather(*(caller(f"caller {n}") for n in range(10)))
    assert seen == {f"caller {n}": f"caller {n}" for n in range(10)}


async def test_a_batch_locks_its_rows_in_key_order(ctx: ServiceContext) -> None:
    release = asyncio.Event()
    order: list[str] = []

    async def blocker(session: AsyncSession) -> None:
        await release.wait()

    def work(key: str) -> Work:
        async def run(session: AsyncSession) -> None:
            order.append(key)

        return run

    first = asyncio.create_task(ctx.commit_together(blocker))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(ctx.commit_together(work(k), lock_key=k)) for k in "cab"]
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(first, *rest)
    assert order == ["a", "b", "c"]


async def test_a_burst_of_reset_requests_is_one_email_each_in_few_transactions(
    ctx: ServiceContext, sessionmaker: SessionMaker, queue: ArqRedis
) -> None:
    user_ids = await add_accounts(sessionmaker, [f"user{n}@example.com" for n in range(BURST)])
    await asyncio.gather(
        *(passwords.request_reset(ctx, f"user{n}@example.com") for n in range(BURST))
    )
    await ctx.defer.drain()  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        emails = (await session.execute(select(Email.user_id, Email.kind))).all()
        # Rows written by one transaction carry its id as their xmin.
        transactions = await session.scalar(
            select(func.count(func.distinct(text("xmin::text")))).select_from(Email)
        )
        generations = (await session.scalars(select(User.reset_generation))).all()
    assert sorted(user_id for user_id, _ in emails) == sorted(user_ids)
    assert {kind for _, kind in emails} == {EmailKind.RESET}
    assert set(generations) == {1}
    assert transactions is not None and transactions <= 3
    # Every email was announced to the worker (one script call per transaction).
    assert await queue.zcard(emails_due_key(ctx.settings.QUEUE_NAME)) == BURST
