"""Scenario 9: a person signing in while a stranger floods the registration form from one
address (hardening issue, item 18). The flood is refused by the per-client limits; the
question is what it costs everyone else while it lasts.

The service runs behind one trusted proxy hop (TRUSTED_PROXIES=1), so that the load
generator can speak for many client addresses over loopback: the stranger's (every flood
request carries it in X-Forwarded-For) and the people's. People sign in one after another
(GET /login, POST /login with the right password), each with an account and an address of
their own (so that no per-client or per-account limit of theirs is what is measured); each
sign-in's time is recorded, before the flood, during it, and after it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.harness import Bench, Sink, reset_outbox
from bench.loadgen import LoadResult, csrf_token

STRANGER = "198.51.100.7"
PEOPLE = 2000  # accounts confirmed for the people who sign in (user0 ... user1999)
FLOOD_POSTS = 3000
FLOOD_CONCURRENCY = 50


def _session(base: str, address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=base,
        headers={"X-Forwarded-For": address},
        connector=aiohttp.TCPConnector(limit=0),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def flood(base: str) -> dict[int, int]:
    """FLOOD_POSTS registrations from one address, FLOOD_CONCURRENCY at a time, each with
    its own form session (GET, then POST with the token); statuses counted."""
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(FLOOD_POSTS):
        queue.put_nowait(n)

    async def one_client() -> None:
        async with _session(base, STRANGER) as client:
            while not queue.empty():
                n = queue.get_nowait()
                form = {
                    "username": f"flood{n}",
                    "email": f"flood{n}@example.com",
                    "password": "correct horse battery",
                    "confirm_password": "correct horse battery",
                }
                try:
                    async with client.get("/register") as page:
                        text = await page.text()
                        if page.status != 200:
                            statuses[page.status] = statuses.get(page.status, 0) + 1
                            continue
                        form["csrf_token"] = csrf_token(text)
                    async with client.post("/register", data=form, allow_redirects=False) as r:
                        await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                except (aiohttp.ClientError, TimeoutError, RuntimeError):
                    statuses[0] = statuses.get(0, 0) + 1

    await asyncio.gather(*(one_client() for _ in range(FLOOD_CONCURRENCY)))
    return statuses


async def owner_sign_ins(
    base: str, first: int, password: str, stop: asyncio.Event, *, limit: int = 600
) -> tuple[LoadResult, int]:
    """People sign in one after another until told to stop, person ``first`` first: each
    sign-in's time (GET /login and the POST, until its answer). Returns the next person."""
    result = LoadResult()
    started = time.perf_counter()
    person = first
    while not stop.is_set() and len(result.latencies) < limit and person < PEOPLE:
        address = f"10.{person // 250}.{person % 250}.1"
        async with _session(base, address) as client:
            begun = time.perf_counter()
            if await _sign_in(client, f"user{person}@example.com", password):
                result.latencies.append(time.perf_counter() - begun)
            else:
                result.errors += 1
        person += 1
    result.seconds = time.perf_counter() - started
    return result, person


async def _sign_in(client: aiohttp.ClientSession, email: str, password: str) -> bool:
    try:
        async with client.get("/login") as page:
            token = csrf_token(await page.text())
        form = {"email": email, "password": password, "csrf_token": token}
        async with client.post("/login", data=form, allow_redirects=False) as response:
            await response.read()
            return response.status == 302 and response.headers.get("Location") == "/"
    except (aiohttp.ClientError, TimeoutError, RuntimeError):
        return False


async def measure(base: str, password: str) -> dict[str, Any]:
    """People's sign-ins alone (5 s), during the flood, and after it (5 s)."""
    stop = asyncio.Event()
    alone = asyncio.create_task(owner_sign_ins(base, 0, password, stop))
    await asyncio.sleep(5)
    stop.set()
    before, person = await alone

    stop = asyncio.Event()
    during_task = asyncio.create_task(owner_sign_ins(base, person, password, stop))
    flood_started = time.perf_counter()
    statuses = await flood(base)
    flood_seconds = time.perf_counter() - flood_started
    stop.set()
    during, person = await during_task

    stop = asyncio.Event()
    later = asyncio.create_task(owner_sign_ins(base, person, password, stop))
    await asyncio.sleep(5)
    stop.set()
    after, _ = await later
    return {
        "before": before,
        "during": during,
        "after": after,
        "statuses": statuses,
        "flood_seconds": flood_seconds,
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


async def owner_during_flood(bench: Bench) -> None:
    """Scenario 9, with the service's own limits (not the raised ones the other scenarios
    use): one web process set-up as deployed (WEB_WORKERS default), a worker and a sink."""
    import asyncpg

    sink = Sink(0.0)
    sink.start(bench.env)
    env = bench.with_mail(
        sink,
        TRUSTED_PROXIES="1",
        POSTS_PER_MINUTE="10",
        REGISTRATIONS_PER_MINUTE="60",
        LOGIN_ACCOUNT_CEILING="100",
    )
    dsn = env["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
    connection = await asyncpg.connect(dsn)
    try:
        # Confirmed, and signed in before (so that no new-browser email is part of it).
        await connection.execute(
            "UPDATE users SET confirmed_at = now(), last_sign_in_at = NULL"
            " WHERE username = ANY($1::text[])",
            [f"user{n}" for n in range(PEOPLE)],
        )
    finally:
        await connection.close()
    web, base = bench.start_web(env, "ours")
    workers = bench.start_workers(env)
    try:
        found = await measure(base, "correct horse battery")
    finally:
        web.stop()
        for worker in workers:
            worker.stop()
        sink.stop()
    rows = []
    for label in ("before", "during", "after"):
        result: LoadResult = found[label]
        rows.append(
            [
                f"people's sign-ins {label} the flood",
                f"{len(result.latencies)} ({result.errors} failed)",
                f"{ms(result.p50)} / {ms(result.percentile(95))} / {ms(result.p99)}",
            ]
        )
    statuses = ", ".join(f"{code}: {count}" for code, count in sorted(found["statuses"].items()))
    bench.table(
        "9. A person signing in while a stranger floods the registration form",
        ["measure", "sign-ins", "p50 / p95 / p99 ms (GET /login + POST /login)"],
        rows,
        f"The flood: {FLOOD_POSTS} registration POSTs (each after its GET) from one address, "
        f"{FLOOD_CONCURRENCY} at a time, in {found['flood_seconds']:.1f} s; answers {statuses} "
        "(302: registered within the per-client limit; 429: refused). People sign in one after "
        "another, each with an account and an address of their own (TRUSTED_PROXIES=1, "
        "X-Forwarded-For), under the service's default limits. Target: p95 during the flood "
        "under 1 s.",
    )
    await reset_outbox(bench.env)
