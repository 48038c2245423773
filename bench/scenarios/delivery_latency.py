"""Scenario 3: from the response to the email at the SMTP server."""

from __future__ import annotations

import asyncio
import time

from bench.harness import Bench, Sink, ms, percentile, reset_outbox
from bench.scenarios.worker_throughput import wait_arrivals


# --- scenario 3 ----------------------------------------------------------------------------------
async def delivery_latency(bench: Bench, count: int) -> None:
    from bench.loadgen import browser_session, csrf_token

    sink = Sink(0.0)
    sink.start(bench.env)
    env = bench.with_mail(sink)
    web, base = bench.start_web(env, "ours")
    workers = bench.start_workers(env)
    responded: dict[str, float] = {}
    try:
        await asyncio.sleep(2)  # the worker's start-up
        warm = 10  # the first requests to fresh processes are not counted
        async with browser_session(base) as client:
            for n in range(count + warm):
                email = f"user{n}@example.com"
                async with client.get("/reset_password") as page:
                    token = csrf_token(await page.text())
                form = {"csrf_token": token, "email": email}
                async with client.post(
                    "/reset_password", data=form, allow_redirects=False
                ) as response:
                    if n >= warm:
                        responded[email] = time.time()
                    assert response.status == 302, response.status
                await asyncio.sleep(0.05)
        await wait_arrivals(sink, "user", count + warm, timeout=60)
    finally:
        web.stop()
        for worker in workers:
            worker.stop()
        sink.stop()
    arrived = {rcpt: t for t, rcpt, _ in sink.arrivals()}
    delays = [arrived[email] - at for email, at in responded.items()]
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    bench.table(
        "3. Response → email at the SMTP server (single requests, low load)",
        ["requests", "p50 ms", "p99 ms", "max ms", "target"],
        [[str(count), ms(p50), ms(p99), ms(max(delays)), "p50 < 50 ms, p99 < 200 ms"]],
        "The worker takes an announced email when the doorbell rings (a PUBLISH in the same "
        "script call as the announcement), not at its next poll (WORKER_POLL_DELAY: "
        f"{env.get('WORKER_POLL_DELAY', '0.2 s, the default')}). Counted after 10 requests "
        "that warm the fresh processes up.",
    )
    await reset_outbox(bench.env)
