"""Several web and worker processes on one PostgreSQL and one Redis: each email is delivered once,
and the outbound budget holds in total (MAIL_RATE_PER_SECOND for all of them, not for each)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.jobs import EmailKind, TestEmail
from shared.outbox import add_email, transaction
from shared.passwords import HASHER
from shared.settings import Settings
from tests.e2e.test_faults import WorkerProcess, count_status
from tests.e2e.test_web_server import Web
from tests.support import add_accounts, reset_requests, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_db")]


async def test_three_workers_share_one_outbound_budget(
    settings: Settings, queue: ArqRedis, smtp: MailSink, sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    rate, total = 30, 120  # a burst of 30 goes at once, then 30 a second: >= 3 s in total
    settings = settings.with_values(MAIL_RATE_PER_SECOND=rate, WORKER_METRICS_PORT=0)
    async with transaction(sessionmaker, queue, queue_name=settings.QUEUE_NAME) as session:
        for n in range(total):
            await add_email(session, EmailKind.TEST, f"user{n}@d{n % 40}.example", TestEmail())
    workers = [WorkerProcess(settings, tmp_path / f"worker{n}.log") for n in range(3)]
    try:
        await wait_for(lambda: len(smtp.messages) >= total, timeout=60, every=0.05)
    finally:
        for worker in workers:
            assert await worker.stop() == 0
    arrivals = sorted(m.received_at for m in smtp.messages)
    spread = arrivals[-1] - arrivals[0]
    # With a budget per process the three would send everything in about a second.
    assert spread >= (total - rate) / rate * 0.9, f"{total} messages in {spread:.2f} s"
    counts = Counter(m.message["Message-ID"] for m in smtp.messages)
    assert len(counts) == total and max(counts.values()) == 1
    assert await count_status(sessionmaker) == {"sent": total}
    logs = [worker.log.read_text() for worker in workers]
    assert all(" sent: " in log for log in logs), "every process took a share"
    assert not any("Traceback" in log for log in logs)


async def test_two_web_and_three_worker_processes_survive_a_worker_sigkill(
    settings: Settings, queue: ArqRedis, smtp: MailSink, sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    """Reset requests spread over two web processes, their emails over three worker
    processes; one worker is killed mid-delivery. Every account gets its email (at most the
    killed worker's jobs in flight twice), and the outbound rate holds for all together."""
    rate, total = 40, 160
    settings = settings.with_values(
        WEB_WORKERS=2,
        MAIL_RATE_PER_SECOND=rate,
        WORKER_METRICS_PORT=0,
        # The killed worker's emails: their claims end 10 s after it took them, and the
        # sweeper announces them again (every second, for rows waiting over 3 s).
        WORKER_JOB_TIMEOUT=5,
        OUTBOX_SWEEP_AFTER=3,
        OUTBOX_SWEEP_EVERY=1,
        POSTS_PER_MINUTE=10_000,
    )
    emails = [f"person{n}@d{n % 20}.example" for n in range(total)]
    await add_accounts(sessionmaker, emails, HASHER.hash("correct horse battery staple"))
    smtp.delay = 0.02  # deliveries take a moment: the kill finds some in flight
    web = Web(settings, tmp_path / "web.log")
    workers = [WorkerProcess(settings, tmp_path / f"worker{n}.log") for n in range(3)]
    try:
        assert len(web.pids()) == 2
        requests = asyncio.create_task(reset_requests(web.base_url, emails, clients=8))
        await wait_for(lambda: len(smtp.messages) >= 50, timeout=60, every=0.05)
        workers[0].kill()
        await requests
        await wait_for(lambda: {m.envelope_to[0] for m in smtp.messages} >= set(emails), timeout=90)
    finally:
        for worker in workers[1:]:
            assert await worker.stop() == 0
        assert web.stop() == 0
    counts = Counter(m.envelope_to[0] for m in smtp.messages)
    assert set(counts) == set(emails)
    assert sum(counts.values()) - total <= settings.WORKER_MAX_JOBS
    assert await count_status(sessionmaker) == {"sent": total}
    arrivals = sorted(m.received_at for m in smtp.messages)
    # The budget is one for all processes: a burst of `rate`, then `rate` a second. It is
    # spent when a message is scheduled, while the sink stamps its arrival, after the SMTP
    # exchange and the sleep until its turn; on 2 loaded cores those vary by up to a quarter
    # of a second (a CI run saw 84 in a second against 82 allowed with 2 of slack), which
    # bunches arrivals that were scheduled apart. Three processes each spending a budget
    # of their own would be 3 x `rate` a second, and the total time below would be a third.
    jitter = rate // 4
    for n, start in enumerate(arrivals):
        within_a_second = sum(1 for t in arrivals[n:] if t - start < 1.0)
        assert within_a_second <= 2 * rate + jitter, f"{within_a_second} messages in one second"
    assert arrivals[-1] - arrivals[0] >= (total - rate) / rate * 0.9
    logs = "".join(w.log.read_text() for w in workers[1:]) + web.log.read_text()
    assert "Traceback" not in logs
