"""``python -m bench`` (``make bench``): measure the service against what people use today.

Starts everything it needs on loopback (a database of its own, a Redis database, SMTP sinks in
their own processes, the web service, the worker, and the seed-style Flask reference under
gunicorn), runs five scenarios, prints a markdown table per scenario and appends them, with
the machine's facts, to bench/RESULTS.md. Every load loop is bounded in time and count, and
talks only to 127.0.0.1. Rate limits are raised for the run (they would otherwise, correctly,
refuse a benchmark's traffic).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.cpu import Component, CpuMeter, own_cpu
from bench.flood import owner_during_flood
from bench.loadgen import LoadResult, login_sampler, register_client, reset_client, run_clients
from devstack.servers import Services, discover_services, drop_database, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
WORK = ROOT / "var" / "bench"
DATABASE = "accounts_bench"
USERS = 20_000  # enough that no account gets two resets in one measured window
CORES = len(os.sched_getaffinity(0))
POOL = 8  # MAIL_POOL_SIZE's default: the worker's SMTP connections
# The load generator (this process) gets a core of its own where there are cores to spare;
# on 2 cores that would halve what the servers may use, so there it shares them, and its
# own CPU is reported instead (scenario 1b).
PIN = CORES >= 4
PINNING = (
    f"The load generator ran pinned to core {CORES - 1}, the servers on the others."
    if PIN
    else f"On {CORES} cores the load generator shares them with the servers (pinning it would "
    "take half the machine); its own CPU per reset is in 1b."
)


@dataclass(frozen=True)
class Server:
    """A way to serve one of the two apps, as people deploy it."""

    label: str
    args: str  # after `python`; {port} is filled in
    ours: bool  # this service (with its worker) or the Flask reference
    env: dict[str, str] = field(default_factory=dict)  # on top of the bench's

    def command(self, port: int) -> list[str]:
        return [sys.executable, *self.args.format(port=port).split()]


REFERENCE = "-b 127.0.0.1:{port} --log-level warning bench.reference_app:app"
SERVERS = {
    # `python -m web` as shipped: WEB_WORKERS defaults to one uvicorn process per core.
    "ours": Server("this service (`python -m web`)", "-m web", ours=True),
    # The same with one web process: on a small machine the web shares with its worker and
    # database, fewer processes than cores can do more (scenario 1, 0 ms only).
    "ours-1": Server(
        "this service, `WEB_WORKERS=1`", "-m web", ours=True, env={"WEB_WORKERS": "1"}
    ),
    # The reference as people deploy Flask: gunicorn's threaded workers, 4 x 4.
    "gthread": Server(
        "Flask reference, gunicorn gthread 4 x 4",
        f"-m gunicorn -k gthread -w 4 --threads 4 {REFERENCE}",
        ours=False,
    ),
    # The tutorial's default: gunicorn's sync workers, one per core.
    "sync": Server(
        f"Flask reference, gunicorn sync x {CORES}", f"-m gunicorn -w {CORES} {REFERENCE}", False
    ),
    # The same app under the other ASGI servers, as many processes (scenario 6).
    "hypercorn": Server(
        "this app under hypercorn (h11)",
        f"-m hypercorn --workers {CORES} --worker-class uvloop --bind 127.0.0.1:{{port}} "
        "web:create_app()",
        ours=True,
    ),
    "granian": Server(
        "this app under granian",
        f"-m granian --interface asgi --workers {CORES} --loop uvloop --port {{port}} "
        "--log-level warning --factory web:create_app",
        ours=True,
    ),
}


def _server_cores() -> None:
    """In a started server: every core but the load generator's."""
    os.sched_setaffinity(0, set(range(CORES - 1)))


# --- processes ------------------------------------------------------------------------------
class Process:
    """A subprocess with its output in var/bench/<name>.log."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = WORK / f"{name}.log"
        self._file = self.log.open("w")
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            preexec_fn=_server_cores if PIN else None,  # before any thread starts
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._file.close()


def wait_http(url: str, process: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited; see {process.log}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (loopback)
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{process.name} did not answer {url} in {timeout}s")


@dataclass
class Sink:
    delay: float
    port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def log(self) -> Path:
        return WORK / f"sink-{self.port}.arrivals"

    def start(self, env: dict[str, str]) -> None:
        self.log.unlink(missing_ok=True)
        self.process = Process(
            f"sink-{self.port}",
            [
                sys.executable,
                "-m",
                "bench.sink",
                "--port",
                str(self.port),
                "--delay",
                str(self.delay),
                "--log",
                str(self.log),
            ],
            env,
        )
        deadline = time.monotonic() + 30
        while "ready" not in self.process.log.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("SMTP sink did not start")
            time.sleep(0.1)

    def arrivals(self) -> list[tuple[float, str, str]]:
        if not self.log.exists():
            return []
        rows = []
        # The sink may be writing a line right now: only lines it has finished count.
        for line in self.log.read_text().split("\n")[:-1]:
            stamp, recipient, message_id = line.split(" ", 2)
            rows.append((float(stamp), recipient, message_id))
        return rows

    def stop(self) -> None:
        if self.process:
            self.process.stop()


# --- the environment ---------------------------------------------------------------------------
@dataclass
class Bench:
    services: Services
    env: dict[str, str]
    seconds: float
    results: list[str] = field(default_factory=list)

    def with_mail(self, sink: Sink, **extra: str) -> dict[str, str]:
        return {**self.env, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(sink.port), **extra}

    def start_web(self, env: dict[str, str], app: str) -> tuple[Process, str]:
        """Start one of the SERVERS set-ups on a free port; returns it and its base URL."""
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**env, **SERVERS[app].env, "BASE_URL": base, "PORT": str(port)}
        process = Process(f"web-{app}", SERVERS[app].command(port), env)
        wait_http(f"{base}/reset_password", process)
        return process, base

    def start_workers(self, env: dict[str, str], count: int = 1) -> list[Process]:
        return [Process(f"worker-{n}", [sys.executable, "-m", "worker"], env) for n in range(count)]

    def table(self, title: str, header: list[str], rows: list[list[str]], note: str = "") -> None:
        lines = [
            f"### {title}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        if note:
            lines += ["", note]
        text = "\n".join(lines) + "\n"
        print(text, flush=True)
        self.results.append(text)


async def prepare(services: Services, database: str = DATABASE) -> dict[str, str]:
    """A fresh database at the migrations' head with USERS accounts, and a clean Redis DB."""
    await drop_database(services.admin_dsn, database)
    connection = await asyncpg.connect(services.admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()
    database_url = services.database_url(database)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(ROOT),
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url,
        "REDIS_URL": services.redis_url,
        "QUEUE_NAME": "bench",
        "MAIL_DEFAULT_SENDER": "Accounts <noreply@example.com>",
        "LOG_LEVEL": "WARNING",
        # Raised for the benchmark: its traffic is one client address and a few accounts.
        "POSTS_PER_MINUTE": "100000000",
        "RESET_EMAILS_PER_HOUR": "100000000",
        "REGISTRATIONS_PER_MINUTE": "100000000",
        # Several processes of each kind run side by side: no metrics listeners.
        "METRICS_PORT": "0",
        "WORKER_METRICS_PORT": "0",
        # The worker's outbound budget (every benchmark recipient is @example.com).
        "MAIL_RATE_PER_SECOND": "100000",
        "MAIL_DOMAIN_RATE_PER_MINUTE": "100000000",
    }
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    from shared.passwords import HASHER

    password_hash = HASHER.hash("correct horse battery")
    dsn = database_url.replace("postgresql+asyncpg", "postgresql")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "users",
            records=[
                (
                    f"user{n}",
                    f"user{n}",
                    f"user{n}@example.com",
                    f"user{n}@example.com",
                    password_hash,
                )
                for n in range(USERS)
            ],
            columns=["username", "username_key", "email", "email_key", "password_hash"],
        )
    finally:
        await connection.close()
    from arq.connections import ArqRedis

    redis = ArqRedis.from_url(services.redis_url)
    await redis.flushdb()
    await redis.aclose()
    return env


async def reset_outbox(env: dict[str, str], *, keep_history: bool = False) -> None:
    """Empty the outbox and the queue, and remove accounts made during the run (with
    ``keep_history``: only the pending rows, and the seeded accounts stay)."""
    from arq.connections import ArqRedis

    connection = await asyncpg.connect(
        env["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
    )
    try:
        if keep_history:
            await connection.execute("DELETE FROM emails WHERE status = 'pending'")
        else:
            await connection.execute("TRUNCATE emails RESTART IDENTITY CASCADE")
            await connection.execute("DELETE FROM users WHERE id > $1", USERS)
    finally:
        await connection.close()
    redis = ArqRedis.from_url(env["REDIS_URL"])
    await redis.flushdb()
    await redis.aclose()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.01 else f"{seconds * 1000:.1f}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --- scenario 1 ----------------------------------------------------------------------------------
def cpu_components(web: Process, workers: list[Process], sink: Sink) -> CpuMeter:
    """What scenario 1 meters: the app's processes, the shared services, the SMTP sink."""
    assert sink.process is not None
    return CpuMeter(
        [
            Component("web", (web.popen.pid,)),
            Component("worker", tuple(w.popen.pid for w in workers)),
            Component("PostgreSQL", names=("postgres",)),
            Component("Redis", names=("redis-server", "valkey-server")),
            Component("SMTP sink", (sink.process.popen.pid,)),
        ]
    )


async def settled(env: dict[str, str], timeout: float = 300) -> None:
    """Wait until the outbox has no pending email (each was sent, or skipped because a newer
    reset link superseded it: the same account's earlier link would not work anyway) and no
    new one for half a second: a web process writes its reset links after its answers, so
    the last answers' links may not be in the outbox yet when the load stops."""
    connection = await asyncpg.connect(
        env["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
    )
    try:
        deadline = time.monotonic() + timeout
        previous = -1
        while True:
            pending, total = await connection.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FROM emails"
            )
            if not pending and total == previous:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"emails still pending after {timeout}s")
            previous = total
            await asyncio.sleep(0.1 if pending else 0.5)
    finally:
        await connection.close()


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
            for app in ("ours", "gthread", "sync") + (("ours-1",) if delay == 0 else ()):
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
        f"{delay * 1000:.0f} ms SMTP: **{rate('ours', delay) / rate('gthread', delay):.2f}x** "
        f"(target {target}x)"
        for delay, target in ((0.0, 2), (0.3, 5))
    )
    bench.table(
        "1. Reset request under load (GET form + POST /reset_password)",
        ["server", "SMTP delay", "clients", "resets/s", "p50 ms", "p99 ms", "errors"],
        rows,
        f"This service against the gthread reference at 64 clients: {ratios}. One operation "
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
    ours_total, reference_total = totals["ours"], totals["gthread"]
    bench.table(
        "1b. CPU per completed reset (ms), 0 ms SMTP, 64 clients, from /proc",
        ["server", *CPU_COLUMNS, "total (without sink and load generator)"],
        cpu_rows,
        f"This service / gthread reference: **{ours_total / reference_total:.2f}x** (target "
        f"0.5x). Request and delivery together: user + system time of every process of each "
        f"component from the start of the 64-client window until the outbox had no pending "
        f"email left. `web` is the server's whole process tree; the reference has no "
        f"worker (it sends inside the request) and uses no Redis.",
    )
    return cells


CPU_COLUMNS = ["web", "worker", "PostgreSQL", "Redis", "SMTP sink", "load generator"]


async def reset_cells(bench: Bench, app: str, sink: Sink, emails: list[str]) -> list[ResetCell]:
    env = bench.with_mail(sink)
    web, base = bench.start_web(env, app)
    workers = bench.start_workers(env) if SERVERS[app].ours else []
    cells = []
    try:
        for clients in (1, 16, 64):
            await run_clients(reset_client, base, emails, clients, seconds=1.0)
            metered = clients == 64 and sink.delay == 0
            if metered:
                await settled(env)
                meter = cpu_components(web, workers, sink)
                meter.start()
                loadgen = own_cpu()
            result = await run_clients(reset_client, base, emails, clients, seconds=bench.seconds)
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


# --- scenario 4 ----------------------------------------------------------------------------------
def bare_hash_rate(seconds: float, threads: int) -> float:
    from shared.passwords import HASHER

    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def hash_until(index: int) -> None:
        while time.monotonic() < deadline:
            HASHER.hash("correct horse battery")
            counts[index] += 1

    workers = [threading.Thread(target=hash_until, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sum(counts) / seconds


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


# --- scenario 8 ----------------------------------------------------------------------------------
GROWN_EMAILS = 1_000_000
GROWN_USERS = 100_000
GROWN_DATABASE = "accounts_bench_grown"
GROWTH_TURNS = 5  # scenario 8 measures the two databases in turns, the median of each counts
BACKLOG = 20_000
BACKLOG_CLAIM = f"claim 64 behind {BACKLOG:,} pending (statistics from before them)"
BACKLOG_ROWS = """
INSERT INTO emails (kind, recipient, context)
SELECT 'test', 'backlog' || n || '@example.com', '{}'::jsonb FROM generate_series(1, :count) AS n
"""
# 21 claims' worth, in no particular order: the first for the plan, 20 timed.
BACKLOG_SAMPLE = "SELECT id FROM emails WHERE status = 'pending' ORDER BY random() LIMIT 1344"

SEED_USERS = """
INSERT INTO users (username, username_key, email, email_key, password_hash, confirmed_at)
SELECT 'old' || n, 'old' || n, 'old' || n || '@example.org', 'old' || n || '@example.org',
       $1, now() - interval '200 days'
FROM generate_series(1, $2) AS n
"""
# History as it accumulates: mostly sent, some skipped (superseded links), some failed, over
# the retention window (30 days), each about an existing account.
SEED_EMAILS = """
INSERT INTO emails (kind, recipient, context, user_id, status, attempts, last_error,
                    created_at, updated_at, next_attempt_at, sent_at)
SELECT 'reset', 'old' || (n % $2 + 1) || '@example.org', '{}'::jsonb, u.first + n % $2,
       s.status, 1, CASE WHEN s.status = 'failed' THEN '550 5.1.1 no such user' END,
       t.at, t.at, t.at, CASE WHEN s.status = 'sent' THEN t.at END
FROM generate_series(1, $1) AS n
CROSS JOIN LATERAL (SELECT now() - ($1 - n) * (interval '30 days' / $1) AS at) AS t
CROSS JOIN LATERAL (SELECT CASE WHEN n % 20 = 0 THEN 'failed' WHEN n % 20 = 1 THEN 'skipped'
                                ELSE 'sent' END AS status) AS s
CROSS JOIN (SELECT min(id) AS first FROM users WHERE username LIKE 'old%') AS u
"""


async def timed(run: Callable[[], Awaitable[object]], times: int = 20) -> float:
    """Median seconds of ``times`` runs."""
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await run()
        samples.append(time.perf_counter() - started)
    return percentile(samples, 50)


async def hot_statements(env: dict[str, str]) -> tuple[dict[str, float], dict[str, str]]:
    """Median time of the statements that run per delivery or per sweep, and each one's plan.

    The claim and the mark run as the worker runs them: each of the 20 rounds claims 64
    freshly written pending rows and marks them sent, each statement committed. Repeating them
    on the same rows in rolled-back transactions measured the rolled-back versions instead:
    every round left 64 dead versions, indexed in the pending index wherever the update
    could not stay on its page, and the next round's scan walked them. The sweep and the
    gauges change nothing here; they run in rolled-back transactions, as do all the plans
    (EXPLAIN ANALYZE). Last, 20 claims of 64 out of a backlog of BACKLOG rows that arrived
    after the table was analyzed (a queue's usual state: it fills faster than autoanalyze)."""
    from sqlalchemy import event, text

    from shared.db import create_engine, create_sessionmaker
    from shared.services import bounces
    from shared.services.operations import outbox_stats
    from worker.mail.store import _MARK_SENT, OutboxStore, take_overdue

    engine = create_engine(env["DATABASE_URL"], application_name="bench", pool_size=1)
    sessionmaker = create_sessionmaker(engine)
    store = OutboxStore(env["DATABASE_URL"], application_name="bench", lease=60, max_batch=64)

    async def fresh_pending() -> list[int]:
        await queue_emails(env, 64, "hot")
        async with sessionmaker() as session:
            query = text("SELECT id FROM emails WHERE status = 'pending'")
            return list((await session.execute(query)).scalars())

    async def committed(statement: Any, params: dict[str, Any]) -> float:
        async with sessionmaker() as session:
            started = time.perf_counter()
            await session.execute(statement, params)
            await session.commit()
            return time.perf_counter() - started

    async def in_rollback(work: Callable[[Any], Awaitable[object]]) -> None:
        async with sessionmaker() as session:
            await work(session)
            await session.rollback()

    async def plan_of(work: Callable[[Any], Awaitable[object]]) -> str:
        """The scans of what ``work`` sends, each EXPLAIN ANALYZEd in a rolled-back transaction."""
        statements: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
            if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
                statements.append((statement, params))

        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        await in_rollback(work)
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
        lines = []
        async with engine.connect() as connection:
            for statement, params in statements:
                explained = await connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement, params
                )
                lines += [row[0] for row in explained]
            await connection.rollback()
        return " / ".join(line.strip().removeprefix("-> ") for line in lines if "Scan" in line)

    async def gauges(session: Any) -> None:
        await outbox_stats(session)
        await bounces.counts(session)
        await bounces.recent_report_counts(session)

    claim, mark = "claim 64 (UPDATE ... RETURNING)", "mark 64 sent"
    times: dict[str, float] = {}
    plans: dict[str, str] = {}
    try:
        rounds: dict[str, list[float]] = {claim: [], mark: []}
        for _ in range(20):
            params = {"ids": await fresh_pending()}
            for name, update_statement in ((claim, store._claim), (mark, _MARK_SENT)):
                rounds[name].append(await committed(update_statement, params))
        times = {name: percentile(samples, 50) for name, samples in rounds.items()}
        pending = await fresh_pending()
        checks: dict[str, Callable[[Any], Awaitable[object]]] = {
            claim: lambda s: s.execute(store._claim, {"ids": pending}),
            mark: lambda s: s.execute(_MARK_SENT, {"ids": pending}),
            "sweep (overdue pending)": lambda s: take_overdue(s, after=60),
            "gauges (outbox, suppressions, reports)": gauges,
        }
        for name, work in checks.items():
            if name not in times:
                times[name] = await timed(lambda work=work: in_rollback(work))  # type: ignore[misc]
            plans[name] = await plan_of(work)
        # Last, as it leaves the table analyzed: a backlog that arrived after that.
        async with sessionmaker() as session:
            await session.execute(text("ANALYZE emails"))
            await session.execute(text(BACKLOG_ROWS), {"count": BACKLOG})
            await session.commit()
            backlog = list((await session.execute(text(BACKLOG_SAMPLE))).scalars())
        samples = [
            await committed(store._claim, {"ids": backlog[start : start + 64]})
            for start in range(64, len(backlog), 64)
        ]
        times[BACKLOG_CLAIM] = percentile(samples, 50)
        plans[BACKLOG_CLAIM] = await plan_of(
            lambda s: s.execute(store._claim, {"ids": backlog[:64]})
        )
        async with sessionmaker() as session:
            await session.execute(text("DELETE FROM emails WHERE recipient LIKE 'backlog%'"))
            await session.commit()
    finally:
        await store.close()
        await engine.dispose()
    return times, plans


async def seed_history(env: dict[str, str]) -> None:
    """GROWN_USERS accounts and GROWN_EMAILS outbox rows of history, vacuumed, analyzed and
    written out."""
    from shared.passwords import HASHER

    connection = await asyncpg.connect(
        env["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
    )
    try:
        started = time.perf_counter()
        await connection.execute(SEED_USERS, HASHER.hash("x"), GROWN_USERS)
        await connection.execute(SEED_EMAILS, GROWN_EMAILS, GROWN_USERS)
        await connection.execute("VACUUM ANALYZE users")
        await connection.execute("VACUUM ANALYZE emails")
        # History is old news: on disk long ago, not dirty buffers that the measured
        # statements would have to write out to find room.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CHECKPOINT")
        print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        await connection.close()


async def growth(bench: Bench, count: int = 2000) -> None:
    """The same deliveries and statements on an empty outbox and with a million rows of
    history and a hundred thousand more accounts: two databases, measured in turns, so that
    what else the machine does falls on both alike."""
    phases = {"empty": bench.env, "grown": await prepare(bench.services, GROWN_DATABASE)}
    samples: dict[str, dict[str, list[float]]] = {phase: {} for phase in phases}
    plans: dict[str, str] = {}
    sink = Sink(0.0)
    sink.start(bench.env)
    try:
        await seed_history(phases["grown"])
        for turn in range(GROWTH_TURNS):
            # ABBA: neither database always runs first, after the other's worker.
            order = list(phases.items())
            for phase, env in order if turn % 2 == 0 else reversed(order):
                history = phase == "grown"
                await reset_outbox(env, keep_history=history)
                times, phase_plans = await hot_statements(env)
                if history:
                    plans = phase_plans
                await reset_outbox(env, keep_history=history)
                tag = f"g{phase}{turn}-"
                await queue_emails(env, count, tag)
                workers = bench.start_workers({**bench.with_mail(sink), **env})
                try:
                    arrived = await wait_arrivals(sink, tag, count, timeout=300)
                finally:
                    for worker in workers:
                        worker.stop()
                times["worker messages/s"] = (count - 1) / (arrived[-1] - arrived[0])
                for name, value in times.items():
                    samples[phase].setdefault(name, []).append(value)
    finally:
        sink.stop()
        await reset_outbox(bench.env)
        await drop_database(bench.services.admin_dsn, GROWN_DATABASE)
    results = {
        phase: {name: percentile(values, 50) for name, values in measures.items()}
        for phase, measures in samples.items()
    }
    rows = []
    for name in results["empty"]:
        empty, grown = results["empty"][name], results["grown"][name]
        rate = name.endswith("/s")
        rows.append(
            [
                name,
                f"{empty:.0f}" if rate else f"{empty * 1000:.2f} ms",
                f"{grown:.0f}" if rate else f"{grown * 1000:.2f} ms",
                f"{grown / empty:.2f}",
            ]
        )
    bench.table(
        f"8. Cost as the data grows: empty outbox vs {GROWN_EMAILS:,} rows of history "
        f"and {GROWN_USERS:,} more accounts",
        ["measure", "empty", "grown", "grown / empty"],
        rows,
        "History: 90 % sent, 5 % skipped, 5 % failed, spread over 30 days, seeded with "
        "generate_series, analyzed and checkpointed, in a second database; the two are "
        f"measured in turns, {GROWTH_TURNS} of each, and each figure is the median of the turns. "
        "Claim and mark: the median of 20 rounds per turn, each round 64 fresh pending rows "
        "claimed and then marked sent, each statement committed, as the worker does; sweep "
        "and gauges: the median of 20 runs in a rolled-back transaction. Worker messages/s as "
        f"in scenario 2 ({count} emails). A /metrics scrape reads no table: the gauges are "
        "refreshed by the sweeper, and their statements are the row above. Plans with the "
        "history in place:\n\n" + "\n".join(f"- {name}: {plan}" for name, plan in plans.items()),
    )


# --- facts and main ------------------------------------------------------------------------------
def cpu_times() -> tuple[int, int]:
    """(all, steal) clock ticks of the machine so far, from /proc/stat (zeros elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def calibration() -> str:
    """How fast this machine's cores were when the run started, so that runs on machines of
    the same type can be compared: the reference in scenario 1 is bound by its SMTP delay,
    ours by CPU, so the ratio follows the speed of the cores."""
    loops = 0
    deadline = time.perf_counter() + 1.0
    while time.perf_counter() < deadline:
        sum(i * i for i in range(10_000))
        loops += 1
    return (
        f"- core speed at the start: {bare_hash_rate(2, 1):.1f} argon2id hashes/s on one "
        f"thread; {loops} pure-Python loops/s (`sum(i * i for i in range(10_000))`)"
    )


def machine_facts() -> list[str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            return f"{name} (not installed)"

    versions = ", ".join(
        version(name)
        for name in (
            "quart",
            "uvicorn",
            "hypercorn",
            "granian",
            "arq",
            "aiosmtplib",
            "sqlalchemy",
            "asyncpg",
            "argon2-cffi",
            "flask",
            "flask-mail",
            "gunicorn",
        )
    )
    return [
        f"- machine: {os.cpu_count()} CPUs ({model}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; {versions}",
    ]


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured cell")
    parser.add_argument("--emails", type=int, default=2000, help="scenario 2's batch")
    parser.add_argument(
        "--only",
        choices=["1", "2", "3", "4", "5", "6", "7", "8", "9"],
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

        scenarios: dict[str, Callable[[], Awaitable[None]]] = {
            "1": scenario_1,
            "2": lambda: worker_throughput(bench, args.emails),
            "3": lambda: delivery_latency(bench, 100),
            "4": lambda: loop_stays_free(bench),
            "5": lambda: worker_scaling(bench),
            "6": lambda: asgi_servers(bench),
            "7": lambda: open_loop(bench, peaks),
            "8": lambda: growth(bench),
            "9": lambda: owner_during_flood(bench, Sink, reset_outbox),
        }
        for key in args.only or sorted(scenarios):
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
