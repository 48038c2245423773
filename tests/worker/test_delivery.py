"""The delivery job against real PostgreSQL, Redis and an aiosmtpd server on loopback."""

from __future__ import annotations

from arq.connections import ArqRedis
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.jobs import (
    EmailKind,
    TestEmail,
    email_job_id,
    emails_due_key,
    enqueue_send_email,
)
from shared.models import Email, EmailStatus
from shared.outbox import add_email, transaction
from shared.settings import Settings
from tests.support import run_burst_worker

pytestmark = __import__("pytest").mark.usefixtures("clean_db")


async def queue_test_email(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings, to: str = "you@example.com"
) -> int:
    async with transaction(sessionmaker, queue, queue_name=settings.QUEUE_NAME) as session:
        return await add_email(session, EmailKind.TEST, to, TestEmail())


async def load(sessionmaker: SessionMaker, email_id: int) -> Email:
    async with sessionmaker() as session:
        email = await session.get(Email, email_id)
        assert email is not None
        return email


async def test_committed_email_is_delivered_once(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings, smtp: MailSink, run_worker
) -> None:
    email_id = await queue_test_email(sessionmaker, queue, settings)
    await run_worker()

    (received,) = smtp.messages
    assert received.envelope_to == ["you@example.com"]
    assert received.message["Subject"] == "test subject"
    row = await load(sessionmaker, email_id)
    assert (row.status, row.attempts, row.last_error) == (EmailStatus.SENT, 1, None)
    assert row.sent_at is not None

    # Announcing the row again (the sweeper, a retry after a crash) sends nothing.
    assert await enqueue_send_email(queue, email_id, queue_name=settings.QUEUE_NAME)
    await run_worker()
    assert len(smtp.messages) == 1


async def test_an_email_queued_as_an_arq_job_by_an_older_version_is_delivered(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings, smtp: MailSink, run_worker
) -> None:
    """A rolling upgrade leaves emails queued the old way, one arq job each."""
    async with sessionmaker() as session, session.begin():
        email_id = await add_email(session, EmailKind.TEST, "old@example.com", TestEmail())
    await queue.enqueue_job(
        "send_email",
        email_id,
        _job_id=email_job_id(email_id, settings.QUEUE_NAME),
        _queue_name=settings.QUEUE_NAME,
    )
    await run_worker()

    (received,) = smtp.messages
    assert received.envelope_to == ["old@example.com"]
    assert (await load(sessionmaker, email_id)).status == EmailStatus.SENT


async def test_rolled_back_transaction_neither_stores_nor_enqueues(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings
) -> None:
    class Boom(Exception):
        pass

    try:
        async with transaction(sessionmaker, queue, queue_name=settings.QUEUE_NAME) as session:
            await add_email(session, EmailKind.TEST, "you@example.com", TestEmail())
            raise Boom
    except Boom:
        pass
    async with sessionmaker() as session:
        assert (await session.scalars(select(Email))).all() == []
    assert await queue.zcard(settings.QUEUE_NAME) == 0
    assert await queue.zcard(emails_due_key(settings.QUEUE_NAME)) == 0


async def test_temporary_failure_is_retried_with_backoff(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings, smtp: MailSink, run_worker
) -> None:
    smtp.reply_queue.extend(["451 4.3.0 try later", "421 4.7.0 busy"])
    email_id = await queue_test_email(sessionmaker, queue, settings)
    await run_worker()  # burst mode waits for the deferred retries too

    assert len(smtp.messages) == 1
    row = await load(sessionmaker, email_id)
    assert row.status == EmailStatus.SENT
    assert row.attempts == 3


async def test_permanent_failure_is_recorded_and_not_retried(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings, smtp: MailSink, run_worker
) -> None:
    smtp.reply_queue.extend(["550 5.1.1 no such user", "250 would have been accepted"])
    email_id = await queue_test_email(sessionmaker, queue, settings)
    await run_worker()

    assert smtp.messages == []
    assert len(smtp.reply_queue) == 1  # the second reply was never asked for
    row = await load(sessionmaker, email_id)
    assert row.status == EmailStatus.FAILED
    assert row.attempts == 1
    assert row.last_error == "550 5.1.1 no such user"


async def test_attempts_are_bounded(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings, smtp: MailSink, run_worker
) -> None:
    limited = settings.with_values(**{"MAIL_MAX_ATTEMPTS": 3})
    smtp.reply_queue.extend(["451 4.3.0 try later"] * 5)
    email_id = await queue_test_email(sessionmaker, queue, limited)
    await run_burst_worker(limited)
    row = await load(sessionmaker, email_id)
    assert row.status == EmailStatus.FAILED
    assert row.attempts == 3
    assert row.last_error == "gave up after 3 attempts: 451 4.3.0 try later"


async def test_invalid_payload_fails_with_a_reason_instead_of_looping(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings, smtp: MailSink, run_worker
) -> None:
    email_id = await queue_test_email(sessionmaker, queue, settings)
    async with sessionmaker() as session, session.begin():
        row = await session.get(Email, email_id)
        assert row is not None
        row.context = {"unexpected": "field"}
    await run_worker()

    row = await load(sessionmaker, email_id)
    assert row.status == EmailStatus.FAILED
    assert row.attempts == 0
    assert row.last_error is not None and row.last_error.startswith("cannot render")
    assert "unexpected" in row.last_error
    assert smtp.messages == []


async def test_smtp_server_down_is_temporary(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings, smtp: MailSink, run_worker
) -> None:
    from devstack.mailsink import free_port

    nowhere = settings.with_values(**{"MAIL_PORT": free_port(), "MAIL_MAX_ATTEMPTS": 2})
    email_id = await queue_test_email(sessionmaker, queue, nowhere)
    await run_burst_worker(nowhere)
    row = await load(sessionmaker, email_id)
    assert row.status == EmailStatus.FAILED
    assert row.attempts == 2
    assert row.last_error is not None and "gave up after 2 attempts" in row.last_error
    assert "Connect" in row.last_error or "connect" in row.last_error


async def test_permanent_failure_alerts_the_admins_once_per_ten_minutes(
    sessionmaker: SessionMaker, queue: ArqRedis, settings: Settings, smtp: MailSink
) -> None:
    with_admins = settings.with_values(ADMINS="ops@example.com")
    smtp.refuse.update(
        {to: "550 5.1.1 no such user" for to in ("gone@example.com", "gone2@example.com")}
    )
    first = await queue_test_email(sessionmaker, queue, with_admins, to="gone@example.com")
    second = await queue_test_email(sessionmaker, queue, with_admins, to="gone2@example.com")
    for _ in range(2):  # the alert is queued by the first run and delivered by the second
        await run_burst_worker(with_admins, max_jobs=1)

    assert (await load(sessionmaker, first)).status == EmailStatus.FAILED
    assert (await load(sessionmaker, second)).status == EmailStatus.FAILED
    (alert,) = smtp.messages  # the same error twice: one alert
    assert alert.envelope_to == ["ops@example.com"]
    assert alert.message["Subject"].startswith("[Accounts] Email ")
    assert "failed permanently" in alert.message["Subject"]
    assert "550 5.1.1 no such user" in alert.part("text/plain")
