"""Scenario 5: 1, 2 and 4 worker processes against a slow (300 ms) provider, at default
settings: each process starts with MAIL_POOL_SIZE connections and adds more while messages
wait (worker/mail/concurrency.py), up to min(MAIL_MAX_CONNECTIONS, WORKER_MAX_JOBS)."""

from __future__ import annotations

from bench.harness import POOL, Bench, Sink, reset_outbox
from bench.scenarios.worker_throughput import queue_emails, wait_arrivals

JOBS = 64  # WORKER_MAX_JOBS's default: the most deliveries (so connections) in flight


# --- scenario 5 ----------------------------------------------------------------------------------
async def worker_scaling(bench: Bench, count: int = 960, delay: float = 0.3) -> None:
    """1, 2 and 4 worker processes against a provider that takes ``delay`` s a message: a
    fixed pool would deliver processes x MAIL_POOL_SIZE / delay; the adaptive one can reach
    processes x WORKER_MAX_JOBS / delay (each delivery in flight holds one connection)."""
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
            fixed = processes * pool / delay
            ceiling = processes * JOBS / delay
            rows.append([str(processes), f"{rate:.0f}", f"{fixed:.0f}", f"{rate / fixed:.2f}",
                         f"{ceiling:.0f}"])  # fmt: skip
    finally:
        sink.stop()
    bench.table(
        f"5. Worker processes against a {delay * 1000:.0f} ms provider ({count} emails)",
        [
            "worker processes",
            "messages/s",
            "a fixed pool's limit (processes x pool / delay)",
            "x the fixed pool",
            "adaptive ceiling (processes x jobs / delay)",
        ],
        rows,
        f"Default settings: each process starts with MAIL_POOL_SIZE={pool} connections and "
        "grows them while messages wait (slow start, then additive), up to "
        f"WORKER_MAX_JOBS={JOBS}; each connection carries one message at a time. The first "
        "second of each run is the ramp. "
        "The processes share the outbox, the queue and the outbound budget through PostgreSQL "
        "and Redis; on 2 cores, 4 processes compete for CPU with the sink, PostgreSQL and "
        "Redis, but this scenario is bound by the provider's delay, not by CPU.",
    )


async def pipelining(bench: Bench, count: int = 120, link: float = 0.01) -> None:
    """One connection to a provider ``link`` s away each way, offering PIPELINING or not:
    without it a message costs four round trips (MAIL, RCPT, DATA, the content), with it two."""
    rows = []
    for offered in (True, False):
        sink = Sink(0.0, link=link, pipelining=offered)
        sink.start(bench.env)
        try:
            await reset_outbox(bench.env)
            tag = f"p{int(offered)}-"
            await queue_emails(bench.env, count, tag)
            one = {"MAIL_POOL_SIZE": "1", "MAIL_MAX_CONNECTIONS": "1"}
            workers = bench.start_workers(bench.with_mail(sink, **one))
            try:
                times = await wait_arrivals(sink, tag, count, timeout=300)
            finally:
                for worker in workers:
                    worker.stop()
        finally:
            sink.stop()
        rate = (count - 1) / (times[-1] - times[0])
        trips = 2 if offered else 4
        rows.append(["offered" if offered else "not offered", f"{rate:.1f}",
                     f"{1 / (trips * 2 * link):.1f}"])  # fmt: skip
    bench.table(
        f"5b. SMTP PIPELINING over a {link * 2000:.0f} ms round trip, one connection "
        f"({count} emails)",
        ["the provider's PIPELINING", "messages/s", "round-trip limit (1 / (trips x RTT))"],
        rows,
        "bench/sink.py --link holds every chunk, each way, for the link's delay. With "
        "PIPELINING the worker writes MAIL FROM, RCPT TO and DATA at once and reads their "
        "three replies together (worker/mail/pipelining.py): two round trips a message "
        "instead of four. MAIL_POOL_SIZE = MAIL_MAX_CONNECTIONS = 1, so the connection's "
        "own rate shows; the adaptive pool multiplies it.",
    )
