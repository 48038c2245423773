"""Scenario 5: 1, 2 and 4 worker processes against a slow (300 ms) provider."""

from __future__ import annotations

from bench.harness import POOL, Bench, Sink, reset_outbox
from bench.scenarios.worker_throughput import queue_emails, wait_arrivals


# --- scenario 5 ----------------------------------------------------------------------------------
async def worker_scaling(bench: Bench, count: int = 240, delay: float = 0.3) -> None:
    """1, 2 and 4 worker processes against a provider that takes ``delay`` s a message: each
    process has MAIL_POOL_SIZE connections, so the limit is processes x pool / delay."""
    sink = Sink(delay)
    sink.start(bench.env)
    pool = POOL
    rows = []
    try:
        for processes in (1, 2, 4):
            await reset_outbox(bench.env)
            tag = f"s{processes}-"
            await queue_emails(bench.env, count, tag)
            workers = bench.start_workers(
                bench.with_mail(sink, MAIL_POOL_SIZE=str(pool)), processes
            )
            try:
                times = await wait_arrivals(sink, tag, count, timeout=300)
            finally:
                for worker in workers:
                    worker.stop()
            rate = (count - 1) / (times[-1] - times[0])
            limit = processes * pool / delay
            rows.append([str(processes), f"{rate:.0f}", f"{limit:.0f}", f"{rate / limit:.2f}"])
    finally:
        sink.stop()
    bench.table(
        f"5. Worker processes against a {delay * 1000:.0f} ms provider ({count} emails)",
        ["worker processes", "messages/s", "limit (processes x pool / delay)", "of the limit"],
        rows,
        f"MAIL_POOL_SIZE={pool} connections per process, each carrying one message at a time. "
        "The processes share the outbox, the queue and the outbound budget through PostgreSQL "
        "and Redis; on 2 cores, 4 processes compete for CPU with the sink, PostgreSQL and "
        "Redis, but this scenario is bound by the provider's delay, not by CPU.",
    )
