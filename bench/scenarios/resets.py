"""Scenario 1: reset requests under load, against the Flask reference as people deploy it, with
the CPU each component spends per completed reset (1b)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.cpu import own_cpu
from bench.harness import (
    CORES,
    PINNING,
    SERVERS,
    USERS,
    Bench,
    Sink,
    cpu_components,
    ms,
    reset_outbox,
    settled,
)
from bench.loadgen import LoadResult, allauth_reset_client, reset_client, run_clients


@dataclass
class ResetCell:
    server: str
    delay: float
    clients: int
    result: LoadResult
    cpu: dict[str, float] = field(default_factory=dict)  # seconds per completed reset


async def reset_under_load(bench: Bench) -> list[ResetCell]:
    """GET + POST /reset_password by closed-loop clients against each set-up; at 64 clients
    and no SMTP delay also the CPU each component spent per completed reset, the email's
    delivery included (the meter runs until the outbox has nothing pending)."""
    cells: list[ResetCell] = []
    emails = [f"user{n}@example.com" for n in range(USERS)]
    for delay in (0.0, 0.3):
        sink = Sink(delay)
        sink.start(bench.env)
        try:
            apps = ("ours", "allauth", "gthread", "sync") + (("ours-1",) if delay == 0 else ())
            for app in apps:
                cells += await reset_cells(bench, app, sink, emails)
        finally:
            sink.stop()
        await reset_outbox(bench.env)
    rows = [
        [
            SERVERS[c.server].label,
            f"{c.delay * 1000:.0f} ms",
            str(c.clients),
            f"{c.result.rate:.0f}",
            ms(c.result.p50),
            ms(c.result.p99),
            str(c.result.errors),
        ]
        for c in cells
    ]

    def rate(server: str, delay: float) -> float:
        (cell,) = [c for c in cells if (c.server, c.delay, c.clients) == (server, delay, 64)]
        return cell.result.rate

    ratios = ", ".join(
        f"{delay * 1000:.0f} ms SMTP: **{rate('ours', delay) / rate('allauth', delay):.2f}x** "
        f"django-allauth (target {target}x), {rate('ours', delay) / rate('gthread', delay):.2f}x "
        "the Flask reference"
        for delay, target in ((0.0, 3), (0.3, 5))
    )
    bench.table(
        "1. Reset request under load (GET form + POST /reset_password)",
        ["server", "SMTP delay", "clients", "resets/s", "p50 ms", "p99 ms", "errors"],
        rows,
        f"This service at 64 clients: {ratios}. One operation "
        f"is the GET of the form plus the POST, by closed-loop clients (aiohttp, in the bench "
        f"process). Each set-up runs with its default process count on this machine "
        f"({CORES} cores): `python -m web` with WEB_WORKERS unset ({CORES} uvicorn "
        f"processes) plus one `python -m worker`; the reference sends the email inside the "
        f"request as the seed does, ours writes it to the outbox and the worker sends it. "
        f"{PINNING}",
    )
    cpu_rows = []
    totals: dict[str, float] = {}
    for c in cells:
        if c.cpu:
            total = sum(v for k, v in c.cpu.items() if k not in ("SMTP sink", "load generator"))
            totals[c.server] = total
            cpu_rows.append(
                [SERVERS[c.server].label, *(ms(c.cpu[k]) for k in CPU_COLUMNS), f"**{ms(total)}**"]
            )
    ours_total, reference_total = totals["ours"], totals["allauth"]
    bench.table(
        "1b. CPU per completed reset (ms), 0 ms SMTP, 64 clients, from /proc",
        ["server", *CPU_COLUMNS, "total (without sink and load generator)"],
        cpu_rows,
        f"This service / django-allauth: **{ours_total / reference_total:.2f}x** (target "
        f"0.35x); / the Flask reference: {ours_total / totals['gthread']:.2f}x. Request and "
        f"delivery together: user + system time of every process of each "
        f"component from the start of the 64-client window until the outbox had no pending "
        f"email left. `web` is the server's whole process tree; the reference has no "
        f"worker (it sends inside the request) and uses no Redis.",
    )
    return cells


CPU_COLUMNS = ["web", "worker", "PostgreSQL", "Redis", "SMTP sink", "load generator"]


async def reset_cells(bench: Bench, app: str, sink: Sink, emails: list[str]) -> list[ResetCell]:
    env = bench.with_mail(sink)
    client = allauth_reset_client if app == "allauth" else reset_client
    web, base = bench.start_web(env, app)
    workers = bench.start_workers(env) if SERVERS[app].ours else []
    cells = []
    try:
        for clients in (1, 16, 64):
            await run_clients(client, base, emails, clients, seconds=1.0)
            metered = clients == 64 and sink.delay == 0
            if metered:
                await settled(env)
                meter = cpu_components(web, workers, sink)
                meter.start()
                loadgen = own_cpu()
            result = await run_clients(client, base, emails, clients, seconds=bench.seconds)
            cell = ResetCell(app, sink.delay, clients, result)
            if metered:
                loadgen = own_cpu() - loadgen
                await settled(env)
                used = meter.stop()
                used["load generator"] = loadgen
                cell.cpu = {k: v / len(result.latencies) for k, v in used.items()}
            cells.append(cell)
    finally:
        web.stop()
        for worker in workers:
            worker.stop()
    return cells
