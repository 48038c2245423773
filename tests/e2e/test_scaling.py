"""Several worker processes on one PostgreSQL and one Redis: each email is delivered once,
and the outbound budget holds in total (MAIL_RATE_PER_SECOND for all of them, not for each)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.jobs import EmailKind, TestEmail
from shared.outbox import add_email, transaction
from shared.settings import Settings
from tests.e2e.test_faults import WorkerProcess, count_status
from tests.support import wait_for

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
