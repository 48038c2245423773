"""Bounces that come back later: every message leaves with its own signed envelope sender
(VERP); real DSN and ARF messages delivered over SMTP to the bounce receiver become records
on the outbox row and the suppression list; forged or unreadable reports change nothing and
are kept; a suppressed address gets nothing; refusals at send time suppress too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest
from arq.connections import ArqRedis
from prometheus_client import generate_latest
from sqlalchemy import select

from devstack.mailsink import MailSink
from devstack.servers import free_port
from shared.db import SessionMaker
from shared.jobs import EmailKind, TestEmail
from shared.models import BounceReport, Email, EmailStatus, Suppression
from shared.outbox import add_email, transaction
from shared.settings import Settings
from shared.verp import bounce_address, email_id_from, find_email_id
from tests.bounce_messages import arf, dsn
from tests.support import run_burst_worker, worker_cli
from worker.bootstrap import worker_options
from worker.bounces.listener import serve
from worker.mail.delivery import sweep_outbox

pytestmark = pytest.mark.usefixtures("clean_db")

DOMAIN = "bounces.example.com"


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return base_settings.with_values(
        BOUNCE_DOMAIN=DOMAIN,
        BOUNCE_LISTEN=f"127.0.0.1:{free_port()}",
        SOFT_BOUNCE_THRESHOLD=2,
        COMPLAINT_ALERT_PER_HOUR=2,
        ADMINS=["ops@example.com"],
    )


@pytest.fixture
async def listener(settings: Settings) -> AsyncIterator[int]:
    ready = asyncio.Event()
    task = asyncio.create_task(serve(settings, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    yield int(settings.BOUNCE_LISTEN.rpartition(":")[2])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def deliver(port: int, to: str, raw: bytes) -> None:
    """Hand a report to the bounce receiver as a remote mail server would (null sender)."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
        await client.sendmail("", [to], raw)  # MAIL FROM:<>


async def send_test_emails(
    settings: Settings, sessionmaker: SessionMaker, queue: ArqRedis, *recipients: str
) -> list[int]:
    async with transaction(sessionmaker, queue, queue_name=settings.QUEUE_NAME) as session:
        ids = [
            await add_email(session, EmailKind.TEST, recipient, TestEmail())
            for recipient in recipients
        ]
    await run_burst_worker(settings)
    return ids


async def row(sessionmaker: SessionMaker, email_id: int) -> Email:
    async with sessionmaker() as session:
        found = await session.get(Email, email_id)
    assert found is not None
    return found


async def suppressions(sessionmaker: SessionMaker) -> dict[str, Suppression]:
    async with sessionmaker() as session:
        return {s.address_key: s for s in await session.scalars(select(Suppression))}


def test_bounce_addresses_are_signed_per_message() -> None:
    address = bounce_address(42, DOMAIN, "k" * 40)
    assert address.startswith("bounces+42.") and address.endswith(f"@{DOMAIN}")
    assert email_id_from(address, DOMAIN, "k" * 40) == 42
    assert email_id_from(address.upper(), DOMAIN, "k" * 40) == 42  # case may change in transit
    assert email_id_from(address, DOMAIN, "another key" * 4) is None
    assert email_id_from(address.replace("+42.", "+43."), DOMAIN, "k" * 40) is None
    assert email_id_from(address.replace(DOMAIN, "evil.example"), DOMAIN, "k" * 40) is None
    assert find_email_id(f"Return-Path: <{address}>\nX: y", DOMAIN, "k" * 40) == 42


async def test_a_hard_bounce_suppresses_the_address_and_nothing_more_is_sent(
    settings: Settings,
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    smtp: MailSink,
    listener: int,
) -> None:
    (first,) = await send_test_emails(settings, sessionmaker, queue, "Bob@Example.com")
    (sent,) = smtp.messages
    key = settings.SECRET_KEY.get_secret_value()
    assert email_id_from(sent.envelope_from, DOMAIN, key) == first  # VERP
    assert "Return-Path" not in sent.message  # the receiving server adds it from MAIL FROM

    await deliver(
        listener, sent.envelope_from, dsn(to=sent.envelope_from, recipient="Bob@Example.com")
    )
    bounced = await row(sessionmaker, first)
    assert (bounced.status, bounced.bounce) == (EmailStatus.SENT, "hard")
    assert "5.1.1" in (bounced.bounce_detail or "") and bounced.bounced_at is not None
    listed = await suppressions(sessionmaker)
    assert list(listed) == ["bob@example.com"]
    assert listed["bob@example.com"].cause == "hard_bounce"
    assert "User unknown" in listed["bob@example.com"].reason

    (second,) = await send_test_emails(settings, sessionmaker, queue, "bob@example.com")
    skipped = await row(sessionmaker, second)
    assert skipped.status == EmailStatus.SKIPPED
    assert (skipped.last_error or "").startswith("suppressed: 5.1.1")
    assert len(smtp.messages) == 1  # nothing more went out


async def test_soft_bounces_suppress_only_past_the_threshold(
    settings: Settings,
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    smtp: MailSink,
    listener: int,
) -> None:
    await send_test_emails(settings, sessionmaker, queue, "full@example.com", "full@example.com")
    first, second = smtp.messages
    await deliver(listener, first.envelope_from, dsn(
        to=first.envelope_from, recipient="full@example.com", status="4.2.2",
        diagnostic="smtp; 452 4.2.2 Mailbox full"))  # fmt: skip
    assert await suppressions(sessionmaker) == {}
    await deliver(listener, second.envelope_from, dsn(
        to=second.envelope_from, recipient="full@example.com", status="5.2.2",
        diagnostic="smtp; 552 5.2.2 Mailbox full"))  # fmt: skip
    listed = await suppressions(sessionmaker)
    assert listed["full@example.com"].cause == "soft_bounces"
    # A "still trying" notice is recorded and changes nothing.
    await deliver(listener, first.envelope_from, dsn(
        to=first.envelope_from, recipient="full@example.com", status="4.4.1", action="delayed",
        diagnostic="smtp; 421 try later"))  # fmt: skip
    async with sessionmaker() as session:
        outcomes = list(
            await session.scalars(select(BounceReport.outcome).order_by(BounceReport.id))
        )
    assert outcomes == ["soft_bounce", "soft_bounce", "delayed"]


async def test_complaints_suppress_and_a_spike_alerts_the_admins(
    settings: Settings,
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    smtp: MailSink,
    listener: int,
) -> None:
    ids = await send_test_emails(settings, sessionmaker, queue, "c1@example.com", "c2@example.com")
    by_recipient = {m.envelope_to[0]: m.envelope_from for m in smtp.messages}
    for recipient in ("c1@example.com", "c2@example.com"):
        # Feedback loops report to a fixed address; the report names our envelope sender.
        report = arf(
            to=f"fbl@{DOMAIN}", original_mail_from=by_recipient[recipient], recipient=recipient
        )
        await deliver(listener, f"fbl@{DOMAIN}", report)
    assert {(await row(sessionmaker, i)).bounce for i in ids} == {"complaint"}
    listed = await suppressions(sessionmaker)
    assert {s.cause for s in listed.values()} == {"complaint"}
    assert "abuse" in listed["c1@example.com"].reason
    async with sessionmaker() as session:
        alerts = list(
            await session.scalars(select(Email).where(Email.kind == EmailKind.ADMIN_ALERT))
        )
    assert [a.recipient for a in alerts] == ["ops@example.com"]
    assert "2 spam complaints in the last hour" in alerts[0].context["summary"]


async def test_forged_and_unreadable_reports_change_nothing_and_are_kept(
    settings: Settings,
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    smtp: MailSink,
    listener: int,
) -> None:
    (email_id,) = await send_test_emails(settings, sessionmaker, queue, "victim@example.com")
    forged_to = f"bounces+{email_id}.aaaaaaaaaaaaa@{DOMAIN}"
    await deliver(listener, forged_to, dsn(to=forged_to, recipient="victim@example.com"))
    await deliver(listener, f"postmaster@{DOMAIN}", b"Subject: hello\r\n\r\nJust saying hi.\r\n")
    assert (await row(sessionmaker, email_id)).bounce is None
    assert await suppressions(sessionmaker) == {}
    async with sessionmaker() as session:
        kept = list(await session.scalars(select(BounceReport).order_by(BounceReport.id)))
    assert [(r.outcome, r.email_id) for r in kept] == [("unmatched", None), ("unparsed", None)]
    assert all(r.raw for r in kept)

    listed = await worker_cli(settings, "bounce-reports")
    assert "unmatched" in listed.stdout and "unparsed" in listed.stdout
    shown = await worker_cli(settings, "bounce-reports", "--show", str(kept[1].id))
    assert "Just saying hi." in shown.stdout

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await deliver(listener, "someone@elsewhere.example", b"Subject: relay?\r\n\r\nx\r\n")


async def test_refusals_at_send_time_suppress_only_bad_addresses(
    settings: Settings, sessionmaker: SessionMaker, queue: ArqRedis, smtp: MailSink
) -> None:
    smtp.refuse["gone@example.com"] = "550 5.1.1 <gone@example.com>: no such user"
    smtp.refuse["spammy@example.com"] = "554 5.7.1 message refused as spam"
    gone, spammy = await send_test_emails(
        settings, sessionmaker, queue, "gone@example.com", "spammy@example.com"
    )
    assert (await row(sessionmaker, gone)).status == EmailStatus.FAILED
    assert (await row(sessionmaker, spammy)).status == EmailStatus.FAILED
    listed = await suppressions(sessionmaker)
    assert list(listed) == ["gone@example.com"] and listed["gone@example.com"].cause == "rejected"

    worker_ctx: dict[str, Any] = {"redis": queue}
    options = worker_options(settings)
    await options["on_startup"](worker_ctx)
    try:
        await sweep_outbox(worker_ctx)  # refreshes the gauges
    finally:
        await options["on_shutdown"](worker_ctx)
    scraped = generate_latest().decode()
    assert 'accounts_suppressed_addresses{cause="rejected"} 1.0' in scraped
    assert 'accounts_suppressed_addresses{cause="complaint"} 0.0' in scraped

    shown = await worker_cli(settings, "suppressions", "list")
    assert "rejected      gone@example.com" in shown.stdout
    assert "550 5.1.1" in shown.stdout
    removed = await worker_cli(settings, "suppressions", "remove", "GONE@example.com")
    assert removed.returncode == 0
    assert await suppressions(sessionmaker) == {}
    assert (
        await worker_cli(settings, "suppressions", "remove", "gone@example.com")
    ).returncode == 1


async def test_the_receiver_bounds_what_one_sender_can_take(
    settings: Settings, sessionmaker: SessionMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections at once per client, a total deadline per connection (a byte every few
    seconds does not keep one open), reports per client per minute, and a small prefix of
    an unmatched report kept: what an anonymous sender can make the service hold is
    bounded."""
    from shared.ratelimit import Limit
    from worker.bounces import listener as bounce_listener

    monkeypatch.setattr(bounce_listener, "CONNECTION_DEADLINE", 1.5)
    monkeypatch.setattr(bounce_listener, "REPORTS_PER_CLIENT", Limit("bounce-test", 3, 60))
    ready = asyncio.Event()
    task = asyncio.create_task(serve(settings, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    port = int(settings.BOUNCE_LISTEN.rpartition(":")[2])
    try:
        opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        greetings = [await reader.readline() for reader, _ in opened]
        assert all(line.startswith(b"220") for line in greetings[:4])
        assert greetings[4].startswith(b"421")  # the fifth at once
        assert await _closed(opened[4][0], 2)
        for _, writer in opened:
            writer.close()
        await asyncio.sleep(0.2)  # the server sees them go

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await reader.readline()).startswith(b"220")
        started = asyncio.get_running_loop().time()
        for letter in b"HELO slowly":  # a slow drip: each byte well within the read timeout
            writer.write(bytes([letter]))
            await writer.drain()
            if await _closed(reader, 0.3):
                break
        assert await _closed(reader, 3), "the connection outlived its deadline"
        assert 1.2 < asyncio.get_running_loop().time() - started < 4

        big = b"Subject: not ours\r\n\r\n" + (b"x" * 998 + b"\r\n") * 250
        for _ in range(3):
            await deliver(port, f"postmaster@{DOMAIN}", big)
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await deliver(port, f"postmaster@{DOMAIN}", big)
        assert refused.value.code == 450
        async with sessionmaker() as session:
            kept = list(await session.scalars(select(BounceReport)))
        assert len(kept) == 3 and all(len(r.raw or b"") <= 8 * 1024 for r in kept)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(1024), within)
    except TimeoutError:
        return False
    return data == b"" or reader.at_eof()
