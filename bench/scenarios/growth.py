"""Scenario 8: the hot statements and the worker with a million rows of outbox history, and a
claim behind a 20,000-email backlog."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench.harness import Bench, Sink, percentile, prepare, reset_outbox, timed
from bench.scenarios.worker_throughput import queue_emails, wait_arrivals
from devstack.servers import drop_database

# --- scenario 8 ----------------------------------------------------------------------------------
GROWN_EMAILS = 1_000_000


GROWN_USERS = 100_000


GROWN_DATABASE = "accounts_bench_grown"


GROWTH_TURNS = 5  # scenario 8 measures the two databases in turns, the median of each counts


BACKLOG = 20_000


BACKLOG_CLAIM = f"claim 64 behind {BACKLOG:,} pending (statistics from before them)"


BACKLOG_ROWS = """
INSERT INTO emails (kind, recipient, recipient_key, context)
SELECT 'test', 'backlog' || n || '@example.com', 'backlog' || n || '@example.com', '{}'::jsonb
FROM generate_series(1, :count) AS n
"""


# 21 claims' worth, in no particular order: the first for the plan, 20 timed.
BACKLOG_SAMPLE = "SELECT id FROM emails WHERE status = 'pending' ORDER BY random() LIMIT 1344"


SEED_USERS = """
INSERT INTO users (username, username_key, email, email_key, password_hash, confirmed_at)
SELECT 'old' || n, 'old' || n, 'old' || n || '@example.org', 'old' || n || '@example.org',
       $1, now() - interval '200 days'
FROM generate_series(1, $2) AS n
"""


# History as it accumulates: mostly sent, some skipped (superseded links), some failed, over
# the retention window (30 days), each about an existing account.
SEED_EMAILS = """
INSERT INTO emails (kind, recipient, recipient_key, context, user_id, status, attempts,
                    last_error, created_at, updated_at, next_attempt_at, sent_at)
SELECT 'reset', 'old' || (n % $2 + 1) || '@example.org', 'old' || (n % $2 + 1) || '@example.org',
       '{}'::jsonb, u.first + n % $2,
       s.status, 1, CASE WHEN s.status = 'failed' THEN '550 5.1.1 no such user' END,
       t.at, t.at, t.at, CASE WHEN s.status = 'sent' THEN t.at END
FROM generate_series(1, $1) AS n
CROSS JOIN LATERAL (SELECT now() - ($1 - n) * (interval '30 days' / $1) AS at) AS t
CROSS JOIN LATERAL (SELECT CASE WHEN n % 20 = 0 THEN 'failed' WHEN n % 20 = 1 THEN 'skipped'
                                ELSE 'sent' END AS status) AS s
CROSS JOIN (SELECT min(id) AS first FROM users WHERE username LIKE 'old%') AS u
"""


async def hot_statements(env: dict[str, str]) -> tuple[dict[str, float], dict[str, str]]:
    """Median time of the statements that run per delivery or per sweep, and each one's plan.

    The claim and the mark run as the worker runs them: each of the 20 rounds claims 64
    freshly written pending rows and marks them sent, each statement committed. Repeating them
    on the same rows in rolled-back transactions measured the rolled-back versions instead:
    every round left 64 dead versions, indexed in the pending index wherever the update
    could not stay on its page, and the next round's scan walked them. The sweep and the
    gauges change nothing here; they run in rolled-back transactions, as do all the plans
    (EXPLAIN ANALYZE). Last, 20 claims of 64 out of a backlog of BACKLOG rows that arrived
    after the table was analyzed (a queue's usual state: it fills faster than autoanalyze)."""
    from sqlalchemy import event, text

    from shared.db import create_engine, create_sessionmaker
    from shared.services import bounces
    from shared.services.operations import outbox_stats
    from worker.mail.store import _MARK_SENT, OutboxStore, take_overdue

    engine = create_engine(env["DATABASE_URL"], application_name="bench", pool_size=1)
    sessionmaker = create_sessionmaker(engine)
    store = OutboxStore(env["DATABASE_URL"], application_name="bench", lease=60, max_batch=64)

    async def fresh_pending() -> list[int]:
        await queue_emails(env, 64, "hot")
        async with sessionmaker() as session:
            query = text("SELECT id FROM emails WHERE status = 'pending'")
            return list((await session.execute(query)).scalars())

    async def committed(statement: Any, params: dict[str, Any]) -> float:
        async with sessionmaker() as session:
            started = time.perf_counter()
            await session.execute(statement, params)
            await session.commit()
            return time.perf_counter() - started

    async def in_rollback(work: Callable[[Any], Awaitable[object]]) -> None:
        async with sessionmaker() as session:
            await work(session)
            await session.rollback()

    async def plan_of(work: Callable[[Any], Awaitable[object]]) -> str:
        """The scans of what ``work`` sends, each EXPLAIN ANALYZEd in a rolled-back transaction."""
        statements: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
            if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
                statements.append((statement, params))

        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        await in_rollback(work)
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
        lines = []
        async with engine.connect() as connection:
            for statement, params in statements:
                explained = await connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement, params
                )
                lines += [row[0] for row in explained]
            await connection.rollback()
        return " / ".join(line.strip().removeprefix("-> ") for line in lines if "Scan" in line)

    async def gauges(session: Any) -> None:
        await outbox_stats(session)
        await bounces.counts(session)
        await bounces.recent_report_counts(session)

    claim, mark = "claim 64 (UPDATE ... RETURNING)", "mark 64 sent"
    times: dict[str, float] = {}
    plans: dict[str, str] = {}
    try:
        rounds: dict[str, list[float]] = {claim: [], mark: []}
        for _ in range(20):
            params = {"ids": await fresh_pending()}
            for name, update_statement in ((claim, store._claim), (mark, _MARK_SENT)):
                rounds[name].append(await committed(update_statement, params))
        times = {name: percentile(samples, 50) for name, samples in rounds.items()}
        pending = await fresh_pending()
        checks: dict[str, Callable[[Any], Awaitable[object]]] = {
            claim: lambda s: s.execute(store._claim, {"ids": pending}),
            mark: lambda s: s.execute(_MARK_SENT, {"ids": pending}),
            "sweep (overdue pending)": lambda s: take_overdue(s, after=60),
            "gauges (outbox, suppressions, reports)": gauges,
        }
        for name, work in checks.items():
            if name not in times:
                times[name] = await timed(lambda work=work: in_rollback(work))  # type: ignore[misc]
            plans[name] = await plan_of(work)
        # Last, as it leaves the table analyzed: a backlog that arrived after that.
        async with sessionmaker() as session:
            await session.execute(text("ANALYZE emails"))
            await session.execute(text(BACKLOG_ROWS), {"count": BACKLOG})
            await session.commit()
            backlog = list((await session.execute(text(BACKLOG_SAMPLE))).scalars())
        samples = [
            await committed(store._claim, {"ids": backlog[start : start + 64]})
            for start in range(64, len(backlog), 64)
        ]
        times[BACKLOG_CLAIM] = percentile(samples, 50)
        plans[BACKLOG_CLAIM] = await plan_of(
            lambda s: s.execute(store._claim, {"ids": backlog[:64]})
        )
        async with sessionmaker() as session:
            await session.execute(text("DELETE FROM emails WHERE recipient LIKE 'backlog%'"))
            await session.commit()
    finally:
        await store.close()
        await engine.dispose()
    return times, plans


async def seed_history(env: dict[str, str]) -> None:
    """GROWN_USERS accounts and GROWN_EMAILS outbox rows of history, vacuumed, analyzed and
    written out."""
    from shared.passwords import HASHER

    connection = await asyncpg.connect(
        env["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
    )
    try:
        started = time.perf_counter()
        await connection.execute(SEED_USERS, HASHER.hash("x"), GROWN_USERS)
        await connection.execute(SEED_EMAILS, GROWN_EMAILS, GROWN_USERS)
        await connection.execute("VACUUM ANALYZE users")
        await connection.execute("VACUUM ANALYZE emails")
        # History is old news: on disk long ago, not dirty buffers that the measured
        # statements would have to write out to find room.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CHECKPOINT")
        print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        await connection.close()


async def growth(bench: Bench, count: int = 2000) -> None:
    """The same deliveries and statements on an empty outbox and with a million rows of
    history and a hundred thousand more accounts: two databases, measured in turns, so that
    what else the machine does falls on both alike."""
    phases = {"empty": bench.env, "grown": await prepare(bench.services, GROWN_DATABASE)}
    samples: dict[str, dict[str, list[float]]] = {phase: {} for phase in phases}
    plans: dict[str, str] = {}
    sink = Sink(0.0)
    sink.start(bench.env)
    try:
        await seed_history(phases["grown"])
        for turn in range(GROWTH_TURNS):
            # ABBA: neither database always runs first, after the other's worker.
            order = list(phases.items())
            for phase, env in order if turn % 2 == 0 else reversed(order):
                history = phase == "grown"
                await reset_outbox(env, keep_history=history)
                times, phase_plans = await hot_statements(env)
                if history:
                    plans = phase_plans
                await reset_outbox(env, keep_history=history)
                tag = f"g{phase}{turn}-"
                await queue_emails(env, count, tag)
                workers = bench.start_workers({**bench.with_mail(sink), **env})
                try:
                    arrived = await wait_arrivals(sink, tag, count, timeout=300)
                finally:
                    for worker in workers:
                        worker.stop()
                times["worker messages/s"] = (count - 1) / (arrived[-1] - arrived[0])
                for name, value in times.items():
                    samples[phase].setdefault(name, []).append(value)
    finally:
        sink.stop()
        await reset_outbox(bench.env)
        await drop_database(bench.services.admin_dsn, GROWN_DATABASE)
    results = {
        phase: {name: percentile(values, 50) for name, values in measures.items()}
        for phase, measures in samples.items()
    }
    rows = []
    for name in results["empty"]:
        empty, grown = results["empty"][name], results["grown"][name]
        rate = name.endswith("/s")
        rows.append(
            [
                name,
                f"{empty:.0f}" if rate else f"{empty * 1000:.2f} ms",
                f"{grown:.0f}" if rate else f"{grown * 1000:.2f} ms",
                f"{grown / empty:.2f}",
            ]
        )
    bench.table(
        f"8. Cost as the data grows: empty outbox vs {GROWN_EMAILS:,} rows of history "
        f"and {GROWN_USERS:,} more accounts",
        ["measure", "empty", "grown", "grown / empty"],
        rows,
        "History: 90 % sent, 5 % skipped, 5 % failed, spread over 30 days, seeded with "
        "generate_series, analyzed and checkpointed, in a second database; the two are "
        f"measured in turns, {GROWTH_TURNS} of each, and each figure is the median of the turns. "
        "Claim and mark: the median of 20 rounds per turn, each round 64 fresh pending rows "
        "claimed and then marked sent, each statement committed, as the worker does; sweep "
        "and gauges: the median of 20 runs in a rolled-back transaction. Worker messages/s as "
        f"in scenario 2 ({count} emails). A /metrics scrape reads no table: the gauges are "
        "refreshed by the sweeper, and their statements are the row above. Plans with the "
        "history in place:\n\n" + "\n".join(f"- {name}: {plan}" for name, plan in plans.items()),
    )
