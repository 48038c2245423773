"""Scenario 7: latency at a fixed rate of half the maximum (open loop, three windows)."""

from __future__ import annotations

from bench.cpu import own_cpu
from bench.harness import SERVERS, USERS, Bench, Sink, ms, reset_outbox
from bench.loadgen import LoadResult

# --- scenario 7 ----------------------------------------------------------------------------------
OPEN_LOOP_WINDOWS = 3  # measured windows per set-up and delay


async def open_loop(bench: Bench, rates: dict[tuple[str, float], float]) -> None:
    """Resets arriving at a fixed rate (half the measured maximum), whatever the answers'
    pace: the latency a user sees at that load, without the closed loop's self-pacing."""
    rows = []
    for delay in (0.0, 0.3):
        sink = Sink(delay)
        sink.start(bench.env)
        try:
            for app in ("ours", "gthread"):
                rate = rates.get((app, delay), 50.0) / 2
                env = bench.with_mail(sink)
                web, base = bench.start_web(env, app)
                workers = bench.start_workers(env) if SERVERS[app].ours else []
                try:
                    await fixed_rate_resets(base, rate, 2)  # warm-up, as scenario 1's cells
                    loadgen = own_cpu()
                    windows = [
                        await fixed_rate_resets(base, rate, bench.seconds)
                        for _ in range(OPEN_LOOP_WINDOWS)
                    ]
                    loadgen = own_cpu() - loadgen
                finally:
                    web.stop()
                    for worker in workers:
                        worker.stop()
                result = LoadResult(
                    [latency for window in windows for latency in window.latencies],
                    sum(window.errors for window in windows),
                )
                rows.append(
                    [
                        SERVERS[app].label,
                        f"{delay * 1000:.0f} ms",
                        f"{rate:.0f}",
                        ms(result.p50),
                        f"**{ms(result.p99)}**",
                        ", ".join(ms(window.p99) for window in windows),
                        ms(max(result.latencies, default=float("nan"))),
                        str(result.errors),
                        f"{loadgen / max(1, len(result.latencies)) * 1000:.2f}",
                    ]
                )
        finally:
            sink.stop()
        await reset_outbox(bench.env)
    bench.table(
        "7. Open loop: POST /reset_password arriving at half the maximum rate",
        [
            "server",
            "SMTP delay",
            "POSTs/s",
            "p50 ms",
            "p99 ms",
            "p99 ms of each window",
            "max ms",
            "errors",
            "load generator CPU ms/POST",
        ],
        rows,
        "Half of each set-up's own 64-client maximum from scenario 1 (50/s if scenario 1 did "
        "not run). Each arrival is due at a fixed time and is sent then, whether or not "
        "earlier ones have been answered; its latency counts from when it was due (no "
        "coordinated omission). 64 browser sessions took their form and CSRF token first, "
        "and the POSTs go round them, after 2 s at the same rate to warm each set-up up, over "
        "plain keep-alive connections (bench/openloop.py: the load generator shares the cores "
        "and its delays count against the servers; through aiohttp it spent ~0.7 ms of CPU a "
        "POST, a tenth of the machine at 300/s, sessions included). "
        f"{OPEN_LOOP_WINDOWS} windows of {bench.seconds:g} s one after the other, each with "
        "fresh sessions; p50 and p99 are over all of their POSTs (a single window's p99 is "
        "its dozen slowest answers, which one stall of the machine decides), and each "
        "window's own p99 shows the spread. Target: p99 < 25 ms at both delays.",
    )


async def fixed_rate_resets(base: str, rate: float, seconds: float) -> LoadResult:
    from bench.openloop import fixed_rate_posts

    def form(n: int) -> dict[str, str]:
        return {"email": f"user{n * 97 % USERS}@example.com"}

    return await fixed_rate_posts(base, "/reset_password", form, rate, seconds)
