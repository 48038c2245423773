"""Faults with real processes: Redis restarting under the web service and the worker, the
worker killed with SIGKILL mid-batch, the SMTP server down and back."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select

from devstack.mailsink import MailSink, free_port, start_sink
from devstack.servers import EmbeddedRedis
from shared.db import SessionMaker
from shared.jobs import EmailKind, TestEmail
from shared.models import Email, EmailStatus
from shared.outbox import add_email, transaction
from shared.settings import Settings
from tests.support import ROOT, settings_env, stop_worker, wait_for
from tests.web.browser import Browser
from web import create_app

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_db")]


class WorkerProcess:
    """``python -m worker`` as a subprocess with its output in a file."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.log = log
        self._file = log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=ROOT,
            env=settings_env(settings),
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    async def stop(self) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.process.wait, 40)
        self._file.close()
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._file.close()


@pytest.fixture
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(free_port())
    server.start()
    yield server
    server.stop()


async def count_status(sessionmaker: SessionMaker) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = await session.execute(select(Email.status, func.count()).group_by(Email.status))
        return {status: count for status, count in rows.all()}


async def test_requests_succeed_while_redis_is_down_and_mail_follows_when_it_is_back(
    settings: Settings,
    redis_server: EmbeddedRedis,
    smtp: MailSink,
    sessionmaker: SessionMaker,
    tmp_path: Path,
) -> None:
    settings = settings.with_values(
        REDIS_URL=redis_server.url, OUTBOX_SWEEP_AFTER=1, OUTBOX_SWEEP_EVERY=1
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    app = create_app(settings)
    try:
        async with app.test_app():
            browser = Browser(app)
            await browser.register("alice", "alice@example.com", confirmed=False)
            await wait_for(lambda: len(smtp.messages) == 1, timeout=30)

            redis_server.stop()
            pages = [
                await Browser(app).register("bob", "bob@example.com", confirmed=False),
                await Browser(app).register("carol", "carol@example.com", confirmed=False),
                await Browser(app).submit("/reset-password", {"email": "alice@example.com"}),
            ]
            assert [(p.status, p.location) for p in pages] == [(302, "/login")] * 3
            assert await count_status(sessionmaker) == {"sent": 1, "pending": 3}
            assert (await browser.get("/readyz")).status == 503

            redis_server.start()  # empty: whatever was queued in it is gone
            await wait_for(lambda: len(smtp.messages) == 4, timeout=60, every=0.2)
            assert (await browser.get("/readyz")).status == 200
        assert worker.alive()
    finally:
        code = await worker.stop()
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert sorted(m.envelope_to[0] for m in smtp.messages) == [
        "alice@example.com",
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    assert await count_status(sessionmaker) == {"sent": 4}


def outbox_id(message_id: str) -> int:
    match = re.match(r"<outbox\.(\d+)\.", message_id)
    assert match
    return int(match.group(1))


async def test_worker_killed_mid_batch_loses_nothing(
    settings: Settings,
    queue: ArqRedis,
    smtp: MailSink,
    sessionmaker: SessionMaker,
    tmp_path: Path,
) -> None:
    # A short delivery timeout, so the killed worker's claims end after 10 s, not 65, and a
    # sweep every second of rows waiting over 3 s (the emails it had taken are lost from
    # Redis with it; the sweeper announces them again from the outbox).
    settings = settings.with_values(
        WORKER_JOB_TIMEOUT=5, OUTBOX_SWEEP_AFTER=3, OUTBOX_SWEEP_EVERY=1
    )
    total = 300
    smtp.delay = 0.01
    async with transaction(sessionmaker, queue, queue_name=settings.QUEUE_NAME) as session:
        for n in range(total):
            await add_email(session, EmailKind.TEST, f"user{n}@example.com", TestEmail())

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    await wait_for(lambda: len(smtp.messages) >= 60, timeout=60)
    worker.kill()
    delivered_before_kill = len(smtp.messages)
    assert delivered_before_kill < total

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        await wait_for(
            lambda: len({outbox_id(m.message["Message-ID"]) for m in smtp.messages}) == total,
            timeout=90,
            every=0.2,
        )
    finally:
        assert await worker.stop() == 0
    counts = Counter(outbox_id(m.message["Message-ID"]) for m in smtp.messages)
    duplicates = sum(count - 1 for count in counts.values())
    # At most the jobs that were in flight when the worker died are sent twice.
    assert duplicates <= settings.WORKER_MAX_JOBS
    assert await count_status(sessionmaker) == {"sent": total}


async def test_smtp_down_then_up_delivers_everything(
    settings: Settings, queue: ArqRedis, sessionmaker: SessionMaker
) -> None:
    from worker.bootstrap import create_worker

    port = free_port()
    # A short breaker cooldown: the breaker opening on the dead server is right, but the
    # test should not wait out 30 s of it.
    settings = settings.with_values(
        MAIL_PORT=port,
        MAIL_RETRY_BASE_DELAY=0.2,
        MAIL_RETRY_MAX_DELAY=0.5,
        MAIL_BREAKER_COOLDOWN=0.5,
    )
    async with transaction(sessionmaker, queue, queue_name=settings.QUEUE_NAME) as session:
        for n in range(5):
            await add_email(session, EmailKind.TEST, f"user{n}@example.com", TestEmail())

    worker = create_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    sink = MailSink()
    controller = None
    try:

        async def failed_once() -> bool:
            async with sessionmaker() as session:
                return bool(
                    await session.scalar(
                        select(func.count()).where(Email.attempts >= 1, Email.status == "pending")
                    )
                )

        await wait_for(failed_once, timeout=20)
        controller = start_sink(sink, port=port)
        await wait_for(lambda: len(sink.messages) == 5, timeout=30)

        async def all_marked_sent() -> bool:
            return await count_status(sessionmaker) == {EmailStatus.SENT: 5}

        await wait_for(all_marked_sent, timeout=10)
    finally:
        await stop_worker(worker, task)
        if controller is not None:
            controller.stop()
    async with sessionmaker() as session:
        errors = list(await session.scalars(select(Email.last_error)))
    assert errors == [None] * 5
