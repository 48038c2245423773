"""What an operator sees and does: the metrics, `python -m worker outbox` and `retry`."""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis
from prometheus_client import generate_latest
from quart import Quart
from sqlalchemy import select, update

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.jobs import EmailKind, TestEmail
from shared.models import Email, EmailStatus
from shared.outbox import add_email, transaction
from shared.settings import Settings
from tests.support import worker_cli as cli


async def queue_emails(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings, n: int
) -> None:
    async with transaction(sessionmaker, queue, queue_name=settings.QUEUE_NAME) as session:
        for i in range(n):
            await add_email(session, EmailKind.TEST, f"user{i}@example.com", TestEmail())


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics")


def scrape() -> str:
    return generate_latest().decode()


async def test_worker_metrics_report_deliveries_and_backlog(
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    settings: Settings,
    smtp: MailSink,
    run_worker: Any,
    clean_db: None,
) -> None:
    before = scrape()
    sent = 'accounts_emails_total{kind="test",outcome="sent"}'
    sent_before = metric(before, sent) if sent in before else 0.0
    timed = "accounts_smtp_send_seconds_count"
    smtp_before = metric(before, timed) if timed in before else 0.0  # none yet when run alone
    await queue_emails(sessionmaker, queue, settings, 3)
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Email).where(Email.id == 3).values(status="failed"))

    await run_worker()  # the sweeper runs at start-up and refreshes the outbox gauges
    text = scrape()
    assert metric(text, sent) == sent_before + 2
    assert metric(text, "accounts_smtp_send_seconds_count") == smtp_before + 2
    assert metric(text, 'accounts_outbox_emails{status="failed"}') == 1
    assert metric(text, "accounts_smtp_breaker_open") == 0
    assert metric(text, "accounts_smtp_connections_allowed") >= settings.MAIL_POOL_SIZE
    assert metric(text, "accounts_worker_last_sweep_timestamp_seconds") > 0


async def test_metrics_are_not_served_on_the_public_port(app: Quart) -> None:
    client = app.test_client()
    assert (await client.get("/metrics")).status_code == 404
    await client.get("/login")
    assert (
        metric(scrape(), 'accounts_http_requests_total{method="GET",route="/login",status="200"}')
        >= 1
    )


async def test_outbox_listing_and_retry(
    settings: Settings,
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    smtp: MailSink,
    run_worker: Any,
    clean_db: None,
) -> None:
    await queue_emails(sessionmaker, queue, settings, 3)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Email)
            .where(Email.id <= 2)
            .values(status=EmailStatus.FAILED, attempts=12, last_error="550 5.1.1 no such user")
        )
        await session.execute(update(Email).where(Email.id == 3).values(context={"bad": "payload"}))

    result = await cli(settings, "outbox")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "status", "kind", "attempts"]
    assert [line.split()[1] for line in lines[1:] if line.split()[0].isdigit()] == [
        "failed",
        "failed",
        "pending",
    ]
    assert "last error: 550 5.1.1 no such user" in result.stdout

    result = await cli(settings, "outbox", "--failed", "--since", "1h")
    assert [
        line.split()[0] for line in result.stdout.splitlines()[1:] if line.split()[0].isdigit()
    ] == ["1", "2"]
    assert (await cli(settings, "outbox", "--since", "yesterday")).returncode == 2

    result = await cli(settings, "retry", "1", "3")
    assert result.returncode == 1
    assert "queued again: 1" in result.stdout
    assert "not failed (left alone): 3" in result.stderr
    result = await cli(settings, "retry", "--all-failed")
    assert "queued again: 2" in result.stdout

    await run_worker()
    async with sessionmaker() as session:
        rows = {row.id: row for row in await session.scalars(select(Email))}
    assert (rows[1].status, rows[2].status) == (EmailStatus.SENT, EmailStatus.SENT)
    assert rows[1].attempts == 1  # a fresh budget of attempts
    assert rows[3].status == EmailStatus.FAILED  # the bad payload is failed, not looped on
    assert sorted(m.envelope_to[0] for m in smtp.messages) == [
        "user0@example.com",
        "user1@example.com",
    ]
