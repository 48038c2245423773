"""Delivery claims (a lease on the outbox row) and the batched statements, on real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy import event, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.jobs import EmailKind, TestEmail, emails_due_key, enqueue_send_email
from shared.models import Email, EmailStatus
from shared.outbox import add_email
from shared.services import bounces
from shared.settings import Settings
from shared.validation import email_key
from worker.bootstrap import claim_lease, create_worker, worker_options
from worker.context import STATE_KEY, WorkerState, state
from worker.mail.delivery import deliver_email, sweep_outbox
from worker.mail.store import OutboxStore, RecordedOutcome

pytestmark = pytest.mark.usefixtures("clean_db")


async def add_test_emails(sessionmaker: SessionMaker, n: int) -> list[int]:
    """Committed outbox rows, not announced to any queue."""
    async with sessionmaker() as session, session.begin():
        return [
            await add_email(session, EmailKind.TEST, f"user{i}@example.com", TestEmail())
            for i in range(n)
        ]


async def row(sessionmaker: SessionMaker, email_id: int) -> Email:
    async with sessionmaker() as session:
        email = await session.get(Email, email_id)
        assert email is not None
        return email


StoreFactory = Callable[..., OutboxStore]


@pytest.fixture
async def make_store(database_url: str) -> AsyncIterator[StoreFactory]:
    """Stores like a worker's (lease 60 s unless told), closed afterwards."""
    stores: list[OutboxStore] = []

    def make(*, lease: float = 60, max_batch: int = 50) -> OutboxStore:
        store = OutboxStore(
            database_url, application_name="tests-delivery", lease=lease, max_batch=max_batch
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> OutboxStore:
    return make_store()


async def test_a_claimed_row_is_left_alone_by_other_runs(
    store: OutboxStore, make_store: StoreFactory, sessionmaker: SessionMaker
) -> None:
    (email_id,) = await add_test_emails(sessionmaker, 1)
    other_worker = make_store()

    claimed = await store.claim(email_id)
    assert claimed is not None and claimed.recipient == "user0@example.com"
    assert await other_worker.claim(email_id) is None
    assert await store.claim(email_id) is None  # a duplicate job in the same worker, too
    claim_end = (await row(sessionmaker, email_id)).claimed_until
    assert claim_end is not None
    async with sessionmaker() as session:
        remaining = claim_end - await session.scalar(select(func.now()))
    assert timedelta(seconds=55) < remaining <= timedelta(seconds=60)


async def test_an_id_asked_for_twice_in_one_batch_is_claimed_once(
    store: OutboxStore, sessionmaker: SessionMaker
) -> None:
    (email_id,) = await add_test_emails(sessionmaker, 1)
    results = await asyncio.gather(store.claim(email_id), store.claim(email_id))
    assert sum(result is not None for result in results) == 1


async def test_an_expired_claim_can_be_taken_over(
    make_store: StoreFactory, sessionmaker: SessionMaker
) -> None:
    (email_id,) = await add_test_emails(sessionmaker, 1)
    # A worker that claimed the row and died: its lease is already over.
    crashed = make_store(lease=-1, max_batch=1)
    assert await crashed.claim(email_id) is not None

    successor = make_store(max_batch=1)
    assert await successor.claim(email_id) is not None


async def test_rows_that_are_not_pending_are_not_claimed(
    store: OutboxStore, sessionmaker: SessionMaker
) -> None:
    ids = await add_test_emails(sessionmaker, 3)
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Email).where(Email.id == ids[0]).values(status="sent"))
        await session.execute(update(Email).where(Email.id == ids[1]).values(status="failed"))
    results = await asyncio.gather(*(store.claim(email_id) for email_id in [*ids, 999999]))
    assert [result is not None for result in results] == [False, False, True, False]


async def test_marking_sent_records_the_attempt_and_releases_the_claim(
    store: OutboxStore, sessionmaker: SessionMaker
) -> None:
    ids = await add_test_emails(sessionmaker, 3)
    for email_id in ids:
        assert await store.claim(email_id) is not None
    await asyncio.gather(*(store.mark_sent(email_id) for email_id in ids))
    for email_id in ids:
        email = await row(sessionmaker, email_id)
        assert (email.status, email.attempts, email.claimed_until) == ("sent", 1, None)
        assert email.sent_at is not None


async def test_concurrent_claims_and_records_go_out_as_one_statement_each(
    store: OutboxStore, sessionmaker: SessionMaker
) -> None:
    ids = await add_test_emails(sessionmaker, 30)
    claimed = await asyncio.gather(*(store.claim(email_id) for email_id in ids))
    assert [email.id for email in claimed if email is not None] == ids
    await asyncio.gather(*(store.mark_sent(email_id) for email_id in ids))
    assert store.statements == 2


async def test_concurrent_deliveries_share_statements(
    settings: Settings, sessionmaker: SessionMaker, queue: ArqRedis, smtp: MailSink
) -> None:
    total = 60
    ids = await add_test_emails(sessionmaker, total)
    for email_id in ids:
        await enqueue_send_email(queue, email_id, queue_name=settings.QUEUE_NAME)
    smtp.delay = 0.02  # deliveries overlap, as they do with a remote server
    worker = create_worker(settings, burst=True, handle_signals=False, max_jobs=30)
    try:
        await worker.main()
        state = worker.ctx[STATE_KEY]
        assert isinstance(state, WorkerState)
        statements = state.store.statements
    finally:
        await asyncio.gather(worker.close(), return_exceptions=True)

    assert len(smtp.messages) == total
    async with sessionmaker() as session:
        statuses = (await session.scalars(select(Email.status))).all()
    assert statuses == [EmailStatus.SENT] * total
    # One claim and one "sent" record per email would be 120 statements.
    assert statements < 2 * total, statements


async def test_outcomes_that_cause_nothing_else_are_recorded_together(
    store: OutboxStore, sessionmaker: SessionMaker
) -> None:
    skipped, held, retried, done = await add_test_emails(sessionmaker, 4)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Email).where(Email.id == held).values(attempts=1, last_error="421 busy")
        )
        await session.execute(update(Email).where(Email.id == done).values(status="sent"))
    for email_id in (skipped, held, retried):
        assert await store.claim(email_id) is not None
    before = store.statements

    await asyncio.gather(
        store.record(
            RecordedOutcome(skipped, EmailStatus.SKIPPED, 0, "superseded by a newer link")
        ),
        # Held back by the budget: no attempt, and the last attempt's error stays.
        store.record(RecordedOutcome(held, EmailStatus.PENDING, 1, None, retry_in=30)),
        store.record(
            RecordedOutcome(retried, EmailStatus.PENDING, 2, "451 try later", retry_in=600)
        ),
        store.record(RecordedOutcome(done, EmailStatus.FAILED, 5, "too late")),  # no longer pending
    )

    assert store.statements == before + 1
    async with sessionmaker() as session:
        now = await session.scalar(select(func.now()))
    rows = {email_id: await row(sessionmaker, email_id) for email_id in (skipped, held, retried)}
    assert (rows[skipped].status, rows[skipped].last_error) == (
        "skipped",
        "superseded by a newer link",
    )
    assert (rows[held].status, rows[held].attempts, rows[held].last_error) == (
        "pending",
        1,
        "421 busy",
    )
    assert (rows[retried].status, rows[retried].attempts, rows[retried].last_error) == (
        "pending",
        2,
        "451 try later",
    )
    assert all(email.claimed_until is None for email in rows.values())
    held_wait = rows[held].next_attempt_at - now
    retry_wait = rows[retried].next_attempt_at - now
    assert timedelta(seconds=25) < held_wait <= timedelta(seconds=30)
    assert timedelta(seconds=595) < retry_wait <= timedelta(seconds=600)
    untouched = await row(sessionmaker, done)
    assert (untouched.status, untouched.attempts, untouched.last_error) == ("sent", 0, None)


async def test_a_backlog_of_stale_emails_is_skipped_without_a_transaction_each(
    worker_ctx: dict[str, Any], sessionmaker: SessionMaker
) -> None:
    """Skipped emails are common (every superseded link): written one transaction each, a
    backlog of them took a third of a core and overflowed the connection pool."""
    total = 30
    ids = await add_test_emails(sessionmaker, total)
    async with sessionmaker() as session, session.begin():
        for n in range(total):
            await bounces.suppress(
                session, f"user{n}@example.com", bounces.Cause.HARD_BOUNCE, "550 5.1.1", None
            )
    st = state(worker_ctx)
    transactions: list[object] = []

    def count(connection: object) -> None:
        transactions.append(connection)

    event.listen(st.engine.sync_engine, "begin", count)
    try:
        await asyncio.gather(*(deliver_email(st, email_id) for email_id in ids))
    finally:
        event.remove(st.engine.sync_engine, "begin", count)

    for email_id in ids:
        email = await row(sessionmaker, email_id)
        assert email.status == EmailStatus.SKIPPED
        assert (email.last_error or "").startswith("suppressed: 550 5.1.1")
    assert transactions == []
    assert st.store.statements <= 6  # claims and records, in batches


async def test_statements_survive_the_server_closing_pooled_connections(
    store: OutboxStore, engine: AsyncEngine, sessionmaker: SessionMaker
) -> None:
    """The store's engine does not ping before each statement; after a PostgreSQL restart
    (here: its backends terminated) a batch is retried once on a fresh connection."""
    first, second = await add_test_emails(sessionmaker, 2)
    assert await store.claim(first) is not None  # the pool now holds an open connection
    async with engine.connect() as connection:
        terminated = await connection.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'tests-delivery'"
            )
        )
    assert terminated
    assert await store.claim(second) is not None
    await store.mark_sent(second)
    assert (await row(sessionmaker, second)).status == EmailStatus.SENT


@pytest.fixture
async def worker_ctx(settings: Settings, queue: ArqRedis) -> AsyncIterator[dict[str, Any]]:
    options = worker_options(settings)
    ctx: dict[str, Any] = {"redis": queue}
    await options["on_startup"](ctx)
    yield ctx
    await options["on_shutdown"](ctx)


async def test_the_sweeper_skips_live_claims_and_takes_over_expired_ones(
    worker_ctx: dict[str, Any], sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings
) -> None:
    live, expired, unclaimed = await add_test_emails(sessionmaker, 3)
    async with sessionmaker() as session, session.begin():
        overdue = func.now() - timedelta(seconds=settings.OUTBOX_SWEEP_AFTER + 1)
        await session.execute(update(Email).values(next_attempt_at=overdue))
        await session.execute(
            update(Email)
            .where(Email.id == live)
            .values(claimed_until=func.now() + timedelta(seconds=30))
        )
        await session.execute(
            update(Email)
            .where(Email.id == expired)
            .values(claimed_until=func.now() - timedelta(seconds=1))
        )

    assert await sweep_outbox(worker_ctx) == 2
    due = await queue.zrange(emails_due_key(settings.QUEUE_NAME), 0, -1)
    assert {int(member) for member in due} == {expired, unclaimed}


def test_a_claim_outlives_any_delivery_and_a_dead_workers_claims_end_soon_after(
    settings: Settings,
) -> None:
    worker = create_worker(settings)
    lease = claim_lease(settings)
    assert worker.job_timeout_s == settings.WORKER_JOB_TIMEOUT  # where deliveries are stopped
    assert settings.WORKER_JOB_TIMEOUT < lease <= settings.WORKER_JOB_TIMEOUT + 10


async def test_suppression_and_accounts_agree_on_what_the_same_address_is(
    sessionmaker: SessionMaker, store: OutboxStore
) -> None:
    """One key for an address (shared.validation.email_key): the domain's case does not make
    another address, a non-ASCII letter's case in the local part does (as for accounts), so
    the claim finds the suppression for exactly the rows that go to that address."""
    async with sessionmaker() as session, session.begin():
        await bounces.suppress(session, "Ülrich@exämple.com", bounces.Cause.HARD_BOUNCE, "550")
        ids = [
            await add_email(session, EmailKind.TEST, address, TestEmail())
            for address in ("Ülrich@EXÄMPLE.com", "ülrich@exämple.com")
        ]
    same, other = [await store.claim(email_id) for email_id in ids]
    assert same is not None and same.suppressed == "550"
    assert other is not None and other.suppressed is None
    async with sessionmaker() as session:
        keys = list(await session.scalars(select(Email.recipient_key).order_by(Email.id)))
    assert keys == [email_key("Ülrich@EXÄMPLE.com"), email_key("ülrich@exämple.com")]
