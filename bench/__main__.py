"""``python -m bench`` (``make bench``): measure the service against what people use today.

Starts everything it needs on loopback (a database of its own, a Redis database, SMTP sinks in
their own processes, the web service, the worker, and the seed-style Flask reference under
gunicorn), runs five scenarios, prints a markdown table per scenario and appends them, with
the machine's facts, to bench/RESULTS.md. Every load loop is bounded in time and count, and
talks only to 127.0.0.1. Rate limits are raised for the run (they would otherwise, correctly,
refuse a benchmark's traffic)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bench.harness import (
    CORES,
    PIN,
    RESULTS,
    ROOT,
    WORK,
    Bench,
    calibration,
    cpu_times,
    machine_facts,
    prepare,
)
from bench.scenarios.against_allauth import against_allauth
from bench.scenarios.asgi_servers import asgi_servers
from bench.scenarios.delivery_latency import delivery_latency
from bench.scenarios.flood import owner_during_flood
from bench.scenarios.growth import growth
from bench.scenarios.login_codes import code_to_inbox
from bench.scenarios.open_loop import open_loop
from bench.scenarios.registrations import loop_stays_free
from bench.scenarios.resets import reset_under_load
from bench.scenarios.soak import soak
from bench.scenarios.tokens import tokens_under_load
from bench.scenarios.worker_scaling import pipelining, worker_scaling
from bench.scenarios.worker_throughput import worker_throughput
from devstack.servers import discover_services


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured cell")
    parser.add_argument("--emails", type=int, default=2000, help="scenario 2's batch")
    parser.add_argument(
        "--only",
        choices=[str(n) for n in range(1, 14)],
        action="append",
        help="run only these scenarios",
    )
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if PIN:
        os.sched_setaffinity(0, {CORES - 1})

    speed = calibration()
    services = discover_services(embedded_dir=WORK / "services", redis_db=14, prefix="BENCH")
    started = time.monotonic()
    ticks_before = cpu_times()
    try:
        bench = Bench(services, await prepare(services), args.seconds)
        peaks: dict[tuple[str, float], float] = {}

        async def scenario_1() -> None:
            for cell in await reset_under_load(bench):
                if cell.clients == 64:
                    peaks[(cell.server, cell.delay)] = cell.result.rate

        async def scenario_5() -> None:
            await worker_scaling(bench)
            await pipelining(bench)

        scenarios: dict[str, Callable[[], Awaitable[None]]] = {
            "1": scenario_1,
            "2": lambda: worker_throughput(bench, args.emails),
            "3": lambda: delivery_latency(bench, 100),
            "4": lambda: loop_stays_free(bench),
            "5": scenario_5,
            "6": lambda: asgi_servers(bench),
            "7": lambda: open_loop(bench, peaks),
            "8": lambda: growth(bench),
            "9": lambda: owner_during_flood(bench),
            "10": lambda: code_to_inbox(bench),
            "11": lambda: tokens_under_load(bench),
            "12": lambda: against_allauth(bench),
            "13": lambda: soak(bench),
        }
        for key in args.only or sorted(scenarios, key=int):
            await scenarios[key]()
    finally:
        services.stop()
    elapsed = time.monotonic() - started
    ticks_after = cpu_times()
    all_ticks = ticks_after[0] - ticks_before[0]
    steal = (ticks_after[1] - ticks_before[1]) / all_ticks * 100 if all_ticks else 0.0
    header = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        *machine_facts(),
        speed,
        f"- CPU time stolen by the hypervisor during the run: {steal:.1f} %",
        f"- run took {elapsed:.0f} s; `python -m bench {' '.join(argv)}`".rstrip(),
        "",
    ]
    report = "\n".join(header) + "\n" + "\n".join(bench.results)
    if not args.no_record:
        with RESULTS.open("a") as results:
            results.write("\n" + report)
        print(f"appended to {RESULTS.relative_to(ROOT)}")
    return 0


def entry() -> Any:
    return asyncio.run(main(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(entry())
