"""Scenario 4: GET /login while registrations saturate the password hashing, and the CPU per
registration by component (4b)."""

from __future__ import annotations

import asyncio
import os
import time

from bench.cpu import Component, CpuMeter, own_cpu
from bench.harness import (
    Bench,
    Process,
    Sink,
    bare_hash_rate,
    cpu_components,
    ms,
    reset_outbox,
    settled,
)
from bench.loadgen import login_sampler, register_client

# --- scenario 4 ----------------------------------------------------------------------------------


REGISTRATION_CPU = [
    ("web, event loops", "web loops"),
    ("web, thread pools (argon2id, zxcvbn)", "web pools"),
    ("worker", "worker"),
    ("PostgreSQL", "PostgreSQL"),
    ("Redis", "Redis"),
    ("SMTP sink", "SMTP sink"),
    ("load generator", "load generator"),
]


def registration_meter(web: Process, workers: list[Process], sink: Sink) -> CpuMeter:
    """Scenario 1's components, with the web's event loops and thread pools apart."""
    web_tree = (web.popen.pid,)
    return CpuMeter(
        [
            Component("web loops", web_tree, threads="main"),
            Component("web pools", web_tree, threads="others"),
            *(c for c in cpu_components(web, workers, sink).components if c.label != "web"),
        ]
    )


async def loop_stays_free(bench: Bench) -> None:
    sink = Sink(0.0)
    sink.start(bench.env)
    env = bench.with_mail(sink)
    web, base = bench.start_web(env, "ours")
    workers = bench.start_workers(env)
    try:
        idle = await login_sampler(base, seconds=3)
        stop = asyncio.Event()
        meter = registration_meter(web, workers, sink)
        meter.start()
        loadgen = own_cpu()
        started = time.perf_counter()
        registrations = asyncio.gather(
            *(register_client(base, n, stop, seconds=bench.seconds + 2) for n in range(8))
        )
        await asyncio.sleep(1)
        loaded = await login_sampler(base, seconds=bench.seconds)
        stop.set()
        done = sum(await registrations)
        registering = time.perf_counter() - started  # until the last client's last answer
        loadgen = own_cpu() - loadgen
        await settled(env)  # every confirmation email delivered: its cost is the worker's
        used = meter.stop()
        used["load generator"] = loadgen
    finally:
        web.stop()
        for worker in workers:
            worker.stop()
        sink.stop()
    threads = os.cpu_count() or 2
    hashes = bare_hash_rate(3, threads)
    registrations_per_s = done / registering
    per_registration = {label: seconds / done for label, seconds in used.items()}
    total = sum(per_registration.values())
    hash_cpu = threads / hashes  # CPU seconds of one bare hash, all threads busy
    # 80 % of the bare rate on these cores leaves this much CPU per registration for the rest.
    allowance = threads / (0.8 * hashes) - hash_cpu
    bench.table(
        "4. GET /login while another client registers users as fast as it can",
        ["measure", "value"],
        [
            ["GET /login p50 / p99, idle", f"{ms(idle.p50)} / {ms(idle.p99)} ms"],
            [
                "GET /login p50 / p99, during registrations",
                f"{ms(loaded.p50)} / {ms(loaded.p99)} ms (target p99 < 100 ms)",
            ],
            ["registrations/s reached (8 clients)", f"{registrations_per_s:.1f}"],
            [f"bare argon2id hashes/s, same parameters, {threads} threads", f"{hashes:.1f}"],
            [
                "registrations / bare hashes",
                f"**{registrations_per_s / hashes:.0%}** (target 80 %)",
            ],
        ],
        "Each registration is one argon2id hash (t=2, m=19 MiB, p=1) in a thread pool, an "
        "insert and an outbox row; the hashing never runs on the event loop, so other "
        "requests are served while it runs.",
    )
    bench.table(
        "4b. CPU per registration (ms), from /proc",
        ["component", "ms"],
        [
            *([name, ms(per_registration[label])] for name, label in REGISTRATION_CPU),
            ["all of them", f"**{ms(total)}**"],
            [f"one bare hash ({threads} threads busy)", ms(hash_cpu)],
            [
                f"what {threads} cores allow at this cost: {threads} / all",
                f"{threads / total:.1f} registrations/s ({threads / total / hashes:.0%} of bare)",
            ],
            [
                "80 % of bare allows for everything but the hash",
                f"{ms(allowance)} (here: {ms(total - hash_cpu)})",
            ],
        ],
        "From the first registration until every confirmation email was delivered, each "
        "process's user + system time divided by the registrations: a registration is GET "
        "/register + POST, its confirmation email rendered and sent by the worker, received by "
        "the sink. The web's event loops also served the GET /login sampler (about "
        f"{len(loaded.latencies) / done:.1f} per registration). Everything shares the "
        f"{threads} cores with the hashes, the load generator and the sink included.",
    )
    await reset_outbox(bench.env)
