"""Scenario 2: the worker's throughput against a bare aiosmtplib loop on as many connections."""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.harness import POOL, Bench, Sink, reset_outbox


# --- scenario 2 ----------------------------------------------------------------------------------
async def bare_loop(port: int, count: int, *, connections: int = 1, encoded: bool = False) -> float:
    """The limit: the same rendered messages sent back to back over ``connections`` reused
    connections in parallel (the worker uses MAIL_POOL_SIZE of them).

    ``encoded``: the messages are turned into wire bytes before the clock starts and sent
    with ``sendmail``, so the loop does nothing but the SMTP exchange (a stricter limit
    than ``send_message``, which flattens each message as it sends it).
    """
    import aiosmtplib

    from worker.mail.render import EmailRenderer, build_message

    renderer = EmailRenderer(site_name="Accounts", base_url="http://127.0.0.1")
    messages = [
        build_message(
            renderer.render("test", {}),
            sender="Accounts <noreply@example.com>",
            recipient=f"bare{n}@example.com",
            message_id=f"<bare.{n}@example.com>",
        )
        for n in range(count)
    ]
    wire = [(f"bare{n}@example.com", m.as_bytes()) for n, m in enumerate(messages)]
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
               for _ in range(connections)]  # fmt: skip
    await asyncio.gather(*(smtp.connect() for smtp in clients))

    async def send(smtp: aiosmtplib.SMTP, share: int) -> None:
        if encoded:
            for recipient, data in wire[share::connections]:
                await smtp.sendmail("noreply@example.com", [recipient], data)
        else:
            for message in messages[share::connections]:
                await smtp.send_message(message)

    started = time.perf_counter()
    await asyncio.gather(*(send(smtp, n) for n, smtp in enumerate(clients)))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(smtp.quit() for smtp in clients))
    return count / elapsed


async def queue_emails(env: dict[str, str], count: int, tag: str) -> None:
    from shared.db import create_engine, create_sessionmaker
    from shared.jobs import EmailKind, TestEmail, create_queue
    from shared.outbox import add_email, transaction

    engine = create_engine(env["DATABASE_URL"], application_name="bench", pool_size=1)
    queue = create_queue(env["REDIS_URL"])
    try:
        async with transaction(
            create_sessionmaker(engine), queue, queue_name=env["QUEUE_NAME"]
        ) as session:
            for n in range(count):
                await add_email(session, EmailKind.TEST, f"{tag}{n}@example.com", TestEmail())
    finally:
        await queue.aclose()
        await engine.dispose()


async def wait_arrivals(sink: Sink, tag: str, count: int, timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = [t for t, rcpt, _ in sink.arrivals() if rcpt.startswith(tag)]
        if len(times) >= count:
            return sorted(times)
        await asyncio.sleep(0.2)
    raise RuntimeError(f"only {len(times)} of {count} {tag} emails arrived in {timeout}s")


ROUNDS = 3  # scenario 2: the limit and the worker alternate, the median of each counts


async def worker_rate(
    bench: Bench, sink: Sink, count: int, tag: str, processes: int = 1, **extra: str
) -> float:
    """Messages/s of ``processes`` worker processes delivering ``count`` queued emails."""
    await reset_outbox(bench.env)
    await queue_emails(bench.env, count, tag)
    workers = bench.start_workers(bench.with_mail(sink, **extra), processes)
    try:
        times = await wait_arrivals(sink, tag, count, timeout=120)
    finally:
        for worker in workers:
            worker.stop()
    return (count - 1) / (times[-1] - times[0])


def spread(values: list[float]) -> str:
    """The median, and the range when there are several runs."""
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.0f}"
    return f"{middle:.0f} ({min(values):.0f}-{max(values):.0f})"


async def worker_throughput(bench: Bench, count: int) -> None:
    sink = Sink(0.0)
    sink.start(bench.env)
    rows = []
    try:
        # The machine's speed drifts by +-20 % within minutes here, so the limit and the
        # worker take turns, and the ratio is of their medians.
        bare_runs: list[float] = []
        worker_runs: list[float] = []
        for round_number in range(ROUNDS):
            bare_runs.append(await bare_loop(sink.port, count, connections=POOL))
            worker_runs.append(await worker_rate(bench, sink, count, f"w{round_number}-"))
        bare = statistics.median(bare_runs)
        one = await bare_loop(sink.port, count)
        encoded = await bare_loop(sink.port, count, connections=POOL, encoded=True)
        rows.append(
            ["bare aiosmtplib loop, 1 reused connection", f"{one:.0f}", f"{one / bare:.2f}"]
        )
        rows.append(
            [
                f"bare loop, {POOL} connections (MAIL_POOL_SIZE: the limit), {ROUNDS} runs",
                spread(bare_runs),
                "1.00",
            ]
        )
        rows.append(
            [
                f"bare loop, {POOL} connections, bytes encoded beforehand (`sendmail`)",
                f"{encoded:.0f}",
                f"{encoded / bare:.2f}",
            ]
        )
        worker = statistics.median(worker_runs)
        rows.append(
            [
                f"this worker, 1 process, {ROUNDS} runs (taking turns with the limit)",
                spread(worker_runs),
                f"**{worker / bare:.2f}**",
            ]
        )
        from worker.mail.signing import generate_key

        runs: list[tuple[str, int, dict[str, str]]] = [("this worker, 2 processes", 2, {})]
        for algorithm in ("rsa-sha256", "ed25519-sha256"):
            dkim = {"DKIM_DOMAIN": "example.com", "DKIM_SELECTOR": "bench",
                    "DKIM_ALGORITHM": algorithm,
                    "DKIM_PRIVATE_KEY": generate_key(algorithm).private_key.decode()}  # fmt: skip
            runs.append((f"this worker, 1 process, DKIM {algorithm}", 1, dkim))
        for label, processes, extra in runs:
            rate = await worker_rate(bench, sink, count, f"w{len(rows)}-", processes, **extra)
            rows.append([label, f"{rate:.0f}", f"{rate / bare:.2f}"])
    finally:
        sink.stop()
    bench.table(
        f"2. Worker throughput ({count} queued emails to a loopback sink)",
        ["sender", "messages/s", f"vs bare loop with {POOL} connections (median)"],
        rows,
        "The worker does per message what the bare loop does not: claims and updates its "
        "outbox row in PostgreSQL, renders text + HTML with inlined CSS, and takes its id "
        "from Redis (the due set, a batch per script call); it sends over its pool of reused "
        "connections in parallel "
        "(MAIL_POOL_SIZE, default 8; WORKER_MAX_JOBS, default 64). Rate = messages between "
        "the first and the last arrival. The outbound budget is raised for the run (every "
        "recipient is @example.com). Target: the worker >= 0.9 of the limit.",
    )
