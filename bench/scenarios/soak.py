"""Scenario 13: a soak. Ten minutes of mixed traffic (page views, sign-ins, reset requests,
sign-ups) at half the rate the same mix reaches flat out, watching what creeps: latency,
each process's memory, connections to PostgreSQL and Redis, open files, and whether every
email the traffic caused was delivered.

A slow leak, a pool that opens one more connection now and then or a queue that falls
behind by a little does not show in a 10-second benchmark; it shows here as a line that
rises from one minute to the next.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio as redis

from bench.cpu import _table, _tree
from bench.harness import USERS, Bench, Process, Sink, ms, percentile, settled
from bench.loadgen import TIMEOUT, csrf_token
from bench.scenarios.against_allauth import OURS, PASSWORD, _confirm_seeded, _sign_in

SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "600"))
WINDOW = 60.0  # one row per minute
WARM_UP = 2  # windows before the baseline (pools fill, caches warm, the first GC cycles)
MAXIMUM_SECONDS = 15.0
BROWSERS = 64
MIX = ("page view",) * 5 + ("sign-in",) * 2 + ("reset request",) * 2 + ("sign-up",)

_names = itertools.count()


@dataclass
class Browsers:
    """Keep-alive browser sessions: ``fresh`` ones lose their cookies before each use (a new
    visitor), ``signed_in`` ones keep a signed-in session for page views."""

    base: str
    fresh: asyncio.Queue[aiohttp.ClientSession] = field(default_factory=asyncio.Queue)
    signed_in: asyncio.Queue[aiohttp.ClientSession] = field(default_factory=asyncio.Queue)
    every: list[aiohttp.ClientSession] = field(default_factory=list)

    def _session(self) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            base_url=self.base,
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=TIMEOUT,
            connector=aiohttp.TCPConnector(limit=1),
        )
        self.every.append(session)
        return session

    async def open(self, count: int) -> None:
        for n in range(count):
            self.fresh.put_nowait(self._session())
            signed = self._session()
            if not await _sign_in(signed, OURS, f"user{(n * 131) % USERS}@example.com"):
                raise RuntimeError("a page-view browser could not sign in")
            self.signed_in.put_nowait(signed)

    async def close(self) -> None:
        await asyncio.gather(*(session.close() for session in self.every))


async def _page(session: aiohttp.ClientSession) -> bool:
    async with session.get(OURS.page, allow_redirects=False) as answer:
        await answer.read()
        return answer.status == 200


async def _reset(session: aiohttp.ClientSession) -> bool:
    async with session.get("/reset-password") as page:
        token = csrf_token(await page.text())
    n = next(_names)
    form = {"csrf_token": token, "email": f"user{(n * 7919) % USERS}@example.com"}
    async with session.post("/reset-password", data=form, allow_redirects=False) as answer:
        return answer.status == 302


async def _sign_up(session: aiohttp.ClientSession) -> bool:
    async with session.get(OURS.signup) as page:
        token = csrf_token(await page.text())
    name = f"soak{next(_names)}"
    form = {"csrf_token": token, "username": name, "email": f"{name}@example.com",
            "password": PASSWORD, "confirm_password": PASSWORD}  # fmt: skip
    async with session.post(OURS.signup, data=form, allow_redirects=False) as answer:
        return answer.status == 302


async def _signing_in(session: aiohttp.ClientSession) -> bool:
    return await _sign_in(session, OURS, f"user{(next(_names) * 104729) % USERS}@example.com")


STEPS: dict[str, Callable[[aiohttp.ClientSession], Awaitable[bool]]] = {
    "page view": _page,
    "sign-in": _signing_in,
    "reset request": _reset,
    "sign-up": _sign_up,
}


async def _operate(
    browsers: Browsers, kind: str, since: float, record: Callable[[str, bool, float], None]
) -> None:
    """One operation of ``kind``; its time counts from ``since`` (when it was due)."""
    queue = browsers.signed_in if kind == "page view" else browsers.fresh
    session = await queue.get()
    try:
        if kind != "page view":
            session.cookie_jar.clear()
        try:
            ok = await STEPS[kind](session)
        except (aiohttp.ClientError, TimeoutError, RuntimeError):
            ok = False
        record(kind, ok, time.perf_counter() - since)
    finally:
        queue.put_nowait(session)


async def _maximum(browsers: Browsers) -> float:
    """Operations per second of the mix with every browser busy, back to back."""
    done = 0
    deadline = time.perf_counter() + MAXIMUM_SECONDS
    kinds = itertools.cycle(MIX)

    def record(kind: str, ok: bool, seconds: float) -> None:
        nonlocal done
        done += ok

    async def loop() -> None:
        while time.perf_counter() < deadline:
            await _operate(browsers, next(kinds), time.perf_counter(), record)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(BROWSERS)))
    return done / (time.perf_counter() - started)


def _rss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _open_files(pids: set[int]) -> int:
    count = 0
    for pid in pids:
        try:
            count += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return count


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    row: list[str] = field(default_factory=list)
    rss: tuple[float, float] = (0.0, 0.0)
    connections: tuple[int, int] = (0, 0)
    files: tuple[int, int] = (0, 0)
    seconds: float = WINDOW


async def _observe(
    window: Window, web: Process, workers: list[Process], db: asyncpg.Connection, r: redis.Redis
) -> None:
    table = _table()
    web_pids = _tree(table, (web.popen.pid,))
    worker_pids = _tree(table, tuple(w.popen.pid for w in workers))
    window.rss = (_rss_mb(web_pids), _rss_mb(worker_pids))
    window.files = (_open_files(web_pids), _open_files(worker_pids))
    backends = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    clients = (await r.info("clients"))["connected_clients"]
    window.connections = (int(backends), int(clients) - 1)  # not counting this one


async def soak(bench: Bench) -> None:
    await _confirm_seeded(bench.env)
    sink = Sink(0.0)
    sink.start(bench.env)
    env = bench.with_mail(sink)
    web, base = bench.start_web(env, "ours")
    workers = bench.start_workers(env)
    db = await asyncpg.connect(env["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql"))
    r = redis.Redis.from_url(env["REDIS_URL"])
    browsers = Browsers(base)
    windows: list[Window] = []
    try:
        await browsers.open(BROWSERS)
        maximum = await _maximum(browsers)
        await settled(env)
        last_before = await db.fetchval("SELECT coalesce(max(id), 0) FROM emails")
        arrivals_before = len(sink.arrivals())
        rate = maximum / 2
        window = Window()
        windows.append(window)

        def record(kind: str, ok: bool, seconds: float) -> None:
            if ok:
                windows[-1].latencies.append(seconds)
            else:
                windows[-1].errors += 1

        tasks: set[asyncio.Task[None]] = set()
        started = time.perf_counter()
        due = started
        kinds = itertools.cycle(MIX)
        window_end = started + WINDOW
        while due < started + SECONDS:
            now = time.perf_counter()
            if now >= window_end:
                await _observe(windows[-1], web, workers, db, r)
                windows.append(Window())
                window_end += WINDOW
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(_operate(browsers, next(kinds), due, record))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            due += 1 / rate
        await asyncio.gather(*tasks)
        windows[-1].seconds = time.perf_counter() - (window_end - WINDOW)
        await _observe(windows[-1], web, workers, db, r)
        await settled(env)
        statuses = dict(
            await db.fetch(
                "SELECT status, count(*) FROM emails WHERE id > $1 GROUP BY status", last_before
            )
        )
        caused = sum(statuses.values())
        arrived = len(sink.arrivals()) - arrivals_before
    finally:
        await browsers.close()
        await db.close()
        await r.aclose()
        web.stop()
        for worker in workers:
            worker.stop()
        sink.stop()
    _report(bench, windows, maximum, rate, caused, arrived, statuses)


def _report(
    bench: Bench,
    windows: list[Window],
    maximum: float,
    rate: float,
    caused: int,
    arrived: int,
    statuses: dict[str, int],
) -> None:
    rows = []
    for n, w in enumerate(windows, 1):
        rows.append([
            str(n) if w.seconds > WINDOW - 1 else f"{n} (its {w.seconds:.0f} s)",
            str(len(w.latencies)), str(w.errors), ms(percentile(w.latencies, 50)),
            ms(percentile(w.latencies, 99)), f"{w.rss[0]:.0f} / {w.rss[1]:.0f}",
            f"{w.connections[0]} / {w.connections[1]}", f"{w.files[0]} / {w.files[1]}",
        ])  # fmt: skip
    baseline = windows[min(WARM_UP, len(windows) - 1) - 1] if len(windows) > 1 else windows[0]
    last = windows[-1]
    growth = [
        (last.rss[i] - baseline.rss[i]) / baseline.rss[i] * 100 if baseline.rss[i] else 0.0
        for i in (0, 1)
    ]
    after = windows[WARM_UP:] or windows
    p99s = [percentile(w.latencies, 99) for w in after if w.latencies]
    half = len(p99s) // 2 or 1
    early, late = statistics.median(p99s[:half]), statistics.median(p99s[half:] or p99s)
    connections = {w.connections for w in after}
    failed = statistics_line(statuses)
    bench.table(
        f"13. Soak: {SECONDS / 60:.0f} minutes of mixed traffic at half the maximum",
        [
            "minute",
            "operations",
            "errors",
            "p50 ms",
            "p99 ms",
            "RSS MB web / worker",
            "connections PostgreSQL / Redis",
            "open files web / worker",
        ],
        rows,
        f"The mix, round robin: {', '.join(f'{MIX.count(k)} {k}' for k in STEPS)} in "
        f"{len(MIX)}. Flat out ({BROWSERS} browsers, {MAXIMUM_SECONDS:.0f} s) it did "
        f"{maximum:.1f} operations/s; the soak asks for {rate:.1f}/s, each operation due at a "
        "fixed time and timed from then (a page view is one GET by a signed-in browser; the "
        "others a form's GET and its POST by a new visitor). "
        f"**RSS after the {WARM_UP}-minute warm-up to the end: web {growth[0]:+.1f} %, worker "
        f"{growth[1]:+.1f} %** (target within 5 %); **p99 {ms(early)} ms in the first half "
        f"after the warm-up, {ms(late)} ms in the second**; connections after the warm-up: "
        f"{', '.join(f'{pg} / {rd}' for pg, rd in sorted(connections))} (PostgreSQL / Redis); "
        f"**{caused} emails caused, {arrived} arrived at the sink**, {failed}.",
    )


def statistics_line(statuses: dict[str, int]) -> str:
    pending = statuses.get("pending", 0)
    failed = statuses.get("failed", 0)
    skipped = statuses.get("skipped", 0)
    return f"{pending} pending, {failed} failed, {skipped} skipped (a newer reset link)"
