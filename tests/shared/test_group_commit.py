"""Deferred writes that arrive together commit together, on real connections: one
transaction for a burst, each write in its caller's context, rows locked in key order, and
one write's failure costing the others nothing."""

from __future__ import annotations

import asyncio
import contextvars
import json

import pytest
from arq.connections import ArqRedis
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.db import SessionMaker
from shared.group_commit import Work
from shared.jobs import EmailKind, emails_due_key
from shared.models import Email, SecurityEvent, User, WebhookDelivery
from shared.services import events, passwords, signin, webhooks
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


async def test_when_busy_writes_spread_over_a_few_ms_share_a_transaction(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    clean_db: None,
) -> None:
    """Deferred writes run after the answers, so waiting for company costs no answer any
    time: at a moderate rate (one write every 10 ms, each of which would otherwise commit
    alone) they share transactions; an isolated write still commits at once."""
    linger = 0.05
    lingering = settings.model_copy(update={"DEFERRED_WRITE_LINGER": linger})
    ctx = committing_context(lingering, engine, sessionmaker, queue)
    user_ids = await add_accounts(sessionmaker, [f"user{n}@example.com" for n in range(6)])
    transactions: list[int] = []
    loop = asyncio.get_running_loop()

    started = loop.time()
    await ctx.commit_together(event_for(user_ids[0], transactions))  # idle: at once
    assert loop.time() - started < linger

    async def later(user_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        await ctx.commit_together(event_for(user_id, transactions))

    await asyncio.gather(*(later(u, n * 0.01) for n, u in enumerate(user_ids[1:])))
    assert await events_of(sessionmaker) == sorted(user_ids)
    assert len(set(transactions[1:])) == 1  # the five spread over 40 ms: one transaction

    await asyncio.sleep(linger * 2)  # idle again
    started = loop.time()
    await ctx.commit_together(event_for(user_ids[0]))
    assert loop.time() - started < linger


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


async def test_a_batch_of_resets_is_three_statements_each_request_its_own_link_and_event(
    ctx: ServiceContext, sessionmaker: SessionMaker, engine: AsyncEngine
) -> None:
    """The reset links of a burst are written set-based (a statement for the accounts, one for
    the emails, one for the events), and still each request gets a link, a generation and an
    event of its own, from its own origin: an address asked for twice gets two links, and
    every event owes its webhook deliveries."""
    every = await webhooks.add_endpoint(ctx, "https://hooks.example.com/all", ["*"])
    resets = await webhooks.add_endpoint(
        ctx, "https://hooks.example.com/resets", ["user.reset_requested"]
    )
    await webhooks.add_endpoint(ctx, "https://hooks.example.com/other", ["user.login_failed"])
    user_ids = await add_accounts(sessionmaker, [f"user{n}@example.com" for n in range(BURST)])
    asked = [f"user{n}@example.com" for n in range(BURST)] + [
        "USER0@example.com",  # the same account again, as typed
        "nobody@example.com",  # no account: nothing written
    ]
    statements: list[str] = []

    def note(_: object, __: object, statement: str, *args: object) -> None:
        statements.append(statement)

    async def request(n: int, email: str) -> None:
        events.set_origin(f"10.0.0.{n}", "test agent")
        await passwords.request_reset(ctx, email)

    sqlalchemy_event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        await asyncio.gather(*(request(n, email) for n, email in enumerate(asked)))
        await ctx.defer.drain()  # type: ignore[attr-defined]
    finally:
        sqlalchemy_event.remove(engine.sync_engine, "before_cursor_execute", note)

    for table in ("UPDATE users", "INSERT INTO emails", "INSERT INTO security_events"):
        assert 1 <= sum(table in statement for statement in statements) <= 3, table
    async with sessionmaker() as session:
        links = (await session.execute(select(Email.user_id, Email.context))).all()
        recorded = (
            await session.execute(
                select(SecurityEvent.user_id, SecurityEvent.client_address, SecurityEvent.kind)
            )
        ).all()
        owed = (
            await session.execute(select(WebhookDelivery.endpoint_id, WebhookDelivery.body))
        ).all()
    first = user_ids[0]
    assert sorted(link.context["generation"] for link in links if link.user_id == first) == [1, 2]
    assert sorted(link.user_id for link in links if link.user_id != first) == sorted(user_ids[1:])
    assert {link.context["generation"] for link in links if link.user_id != first} == {1}
    assert {kind for _, _, kind in recorded} == {Kind.RESET_REQUESTED.value}
    origins = {(user_id, address) for user_id, address, _ in recorded}
    expected = {(user_id, f"10.0.0.{n}") for n, user_id in enumerate(user_ids)}
    assert origins == expected | {(first, f"10.0.0.{BURST}")}
    assert len(recorded) == BURST + 1
    assert sorted(endpoint for endpoint, _ in owed) == sorted([every.id, resets.id] * (BURST + 1))
    bodies = [json.loads(body) for _, body in owed]
    assert {body["type"] for body in bodies} == {"user.reset_requested"}
    assert sorted({body["data"]["user_id"] for body in bodies}) == sorted(user_ids)


async def test_a_batch_of_resets_locks_the_accounts_in_key_order(
    ctx: ServiceContext, sessionmaker: SessionMaker
) -> None:
    """While the batch for a, b and c waits on b (locked elsewhere), it holds a and not c:
    rows are taken in key order, as every batch takes them, so batches cannot deadlock."""
    await add_accounts(sessionmaker, [f"{key}@example.com" for key in "abc"])

    async def locked_elsewhere(key: str) -> bool:
        async with sessionmaker() as session, session.begin():
            try:
                await session.execute(
                    text("SELECT 1 FROM users WHERE email_key = :key FOR UPDATE NOWAIT"),
                    {"key": f"{key}@example.com"},
                )
            except DBAPIError:
                return True
            return False

    release = asyncio.Event()

    async def busy(session: AsyncSession) -> None:
        await release.wait()

    async with sessionmaker() as blocker, blocker.begin():
        await blocker.execute(
            text("SELECT 1 FROM users WHERE email_key = 'b@example.com' FOR UPDATE")
        )
        first = asyncio.create_task(ctx.commit_together(busy))  # the next batch gathers ...
        for key in "cab":
            await passwords.request_reset(ctx, f"{key}@example.com")  # ... these three
        await asyncio.sleep(0.1)
        release.set()
        await asyncio.sleep(0.3)  # the batch has taken a and waits on b
        assert await locked_elsewhere("a") is True
        assert await locked_elsewhere("c") is False
    await first
    await ctx.defer.drain()  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Email)) == 3


async def test_deferred_sign_in_events_are_written_a_statement_per_kind(
    ctx: ServiceContext, sessionmaker: SessionMaker, engine: AsyncEngine
) -> None:
    """A flood of failed and held-back sign-ins defers an event each: a batch of them is one
    statement per kind (plus one look-up of the held-back addresses' accounts), each event
    from its own origin, and nothing for addresses without an account."""
    user_ids = await add_accounts(sessionmaker, [f"user{n}@example.com" for n in range(10)])
    release = asyncio.Event()

    async def busy(session: AsyncSession) -> None:
        await release.wait()

    async def failed(n: int) -> None:
        events.set_origin(f"10.0.1.{n}", "test agent")
        await events.record_alone(ctx, Kind.LOGIN_FAILED, user_ids[n])

    async def held_back(n: int) -> None:
        events.set_origin(f"10.0.2.{n}", "test agent")
        await signin._record_if_known(ctx, f"user{n}@example.com", Kind.LOCKED)

    statements: list[str] = []

    def note(_: object, __: object, statement: str, *args: object) -> None:
        statements.append(statement)

    first = asyncio.create_task(ctx.commit_together(busy))  # the next batch gathers the rest
    await asyncio.sleep(0.05)
    sqlalchemy_event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        rest = [asyncio.create_task(failed(n)) for n in range(10)]
        rest += [asyncio.create_task(held_back(n)) for n in range(5, 15)]  # 10-14: no account
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, *rest)
    finally:
        sqlalchemy_event.remove(engine.sync_engine, "before_cursor_execute", note)

    assert sum("INSERT INTO security_events" in statement for statement in statements) == 2
    assert sum("FROM users" in statement for statement in statements) == 1
    async with sessionmaker() as session:
        rows = await session.execute(
            select(SecurityEvent.kind, SecurityEvent.user_id, SecurityEvent.client_address)
        )
        recorded = {(kind, user_id, address) for kind, user_id, address in rows}
    assert recorded == {
        (Kind.LOGIN_FAILED.value, user_ids[n], f"10.0.1.{n}") for n in range(10)
    } | {(Kind.LOCKED.value, user_ids[n], f"10.0.2.{n}") for n in range(5, 10)}
