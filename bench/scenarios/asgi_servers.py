"""Scenario 6: hypercorn, uvicorn and granian serving this app (wrk)."""

from __future__ import annotations

import re
import shutil
import subprocess

from bench.cpu import Component, CpuMeter
from bench.harness import CORES, SERVERS, USERS, Bench, Sink, ms, reset_outbox
from bench.loadgen import reset_client, run_clients


# --- scenario 6 ----------------------------------------------------------------------------------
def wrk(url: str, seconds: float) -> tuple[float, float]:
    """(requests/s, p99 s) from wrk: 1 thread, 64 connections."""
    out = subprocess.run(
        ["wrk", "-t1", "-c64", f"-d{seconds:.0f}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return rate, float(value) / {"us": 1e6, "ms": 1e3, "s": 1}[unit]


async def asgi_servers(bench: Bench) -> None:
    """The choice of server for `python -m web`: the same app, the same process count."""
    if shutil.which("wrk") is None:
        print("scenario 6 needs wrk (apt install wrk); skipped")
        return
    sink = Sink(0.0)
    sink.start(bench.env)
    emails = [f"user{n}@example.com" for n in range(USERS)]
    rows = []
    try:
        for app in ("ours", "hypercorn", "granian"):
            env = bench.with_mail(sink)
            web, base = bench.start_web(env, app)
            workers = bench.start_workers(env)
            try:
                cells = []
                for path in ("/login", "/healthz"):
                    wrk(base + path, 1)
                    meter = CpuMeter([Component("web", (web.popen.pid,))])
                    meter.start()
                    rate, p99 = wrk(base + path, bench.seconds)
                    cpu = meter.stop()["web"] / (rate * bench.seconds)
                    cells += [f"{rate:.0f}", ms(p99), f"{cpu * 1e6:.0f}"]
                await run_clients(reset_client, base, emails, 64, seconds=1.0)
                resets = await run_clients(reset_client, base, emails, 64, seconds=bench.seconds)
                rows.append([SERVERS[app].label, *cells, f"{resets.rate:.0f}"])
            finally:
                web.stop()
                for worker in workers:
                    worker.stop()
    finally:
        sink.stop()
    await reset_outbox(bench.env)
    bench.table(
        f"6. ASGI servers for this app ({CORES} processes each, uvloop)",
        ["server", "GET /login req/s", "p99 ms", "web CPU us/req", "GET /healthz req/s",
         "p99 ms", "web CPU us/req", "resets/s (64 clients)"],
        rows,
        "wrk (1 thread, 64 connections) for the GETs; the reset column uses the bench's "
        "browser-like clients. `python -m web` runs uvicorn with httptools; the access log is "
        "the app's own in every row.",
    )  # fmt: skip
