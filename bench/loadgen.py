"""A load generator that behaves like browsers: each virtual client has its own cookie jar,
GETs the form, reads its CSRF token and POSTs it back. Every loop stops at a deadline and at a
maximum count, and only ever talks to the base URL it is given (loopback).

aiohttp, not httpx: on this machine httpx spent ~16 ms of CPU per GET + POST, a core's worth
of the load, which the servers under test then lacked; aiohttp needs a fraction of that.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
MAX_OPERATIONS = 200_000  # per run: a hard bound whatever the deadline


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    if not match:
        raise RuntimeError("no CSRF token in the page")
    return match.group(1)


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)


Client = Callable[[str, list[str], int, float, LoadResult], Awaitable[None]]
TIMEOUT = aiohttp.ClientTimeout(total=60)


def browser_session(base: str) -> aiohttp.ClientSession:
    """One virtual browser: its own cookies (unsafe=True: keep cookies of an IP host)."""
    return aiohttp.ClientSession(
        base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=TIMEOUT
    )


Step = Callable[[aiohttp.ClientSession, int], Awaitable[bool]]


async def closed_loop(
    base: str,
    index: int,
    deadline: float,
    result: LoadResult,
    step: Step,
    *,
    fresh_browser: bool = False,
    stride: int = 97,
) -> None:
    """One virtual browser doing ``step(session, n)`` back to back until the deadline,
    timing each that returns True and counting the rest as errors; ``n`` moves on by
    ``stride`` each time (it spreads the accounts); ``fresh_browser``: no cookies kept from
    one operation to the next."""
    async with browser_session(base) as client:
        n = index
        while time.perf_counter() < deadline and len(result.latencies) < MAX_OPERATIONS:
            if fresh_browser:
                client.cookie_jar.clear()
            started = time.perf_counter()
            try:
                ok = await step(client, n)
            except (aiohttp.ClientError, TimeoutError, RuntimeError):
                ok = False
            if ok:
                result.latencies.append(time.perf_counter() - started)
            else:
                result.errors += 1
            n += stride


async def reset_client(
    base: str, emails: list[str], index: int, deadline: float, result: LoadResult
) -> None:
    """GET /reset_password then POST it for an existing account, until the deadline."""

    async def reset(client: aiohttp.ClientSession, n: int) -> bool:
        async with client.get("/reset_password") as page:
            token = csrf_token(await page.text())
        form = {"csrf_token": token, "email": emails[n % len(emails)]}
        async with client.post("/reset_password", data=form, allow_redirects=False) as answer:
            return answer.status == 302

    await closed_loop(base, index, deadline, result, reset)


DJANGO_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def django_token(html: str) -> str:
    match = DJANGO_CSRF.search(html)
    if match is None:
        raise RuntimeError("no CSRF token in the page")
    return match.group(1)


async def allauth_reset_client(
    base: str, emails: list[str], index: int, deadline: float, result: LoadResult
) -> None:
    """The same operation against django-allauth: GET its reset form, POST it (its CSRF
    token in the page and the csrftoken cookie), a 302 to the "done" page."""

    async def reset(client: aiohttp.ClientSession, n: int) -> bool:
        async with client.get("/accounts/password/reset/") as page:
            token = django_token(await page.text())
        form = {"csrfmiddlewaretoken": token, "email": emails[n % len(emails)]}
        path = "/accounts/password/reset/"
        async with client.post(path, data=form, allow_redirects=False) as answer:
            return answer.status == 302

    await closed_loop(base, index, deadline, result, reset)


async def run_clients(
    client: Client, base: str, emails: list[str], clients: int, *, seconds: float
) -> LoadResult:
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(client(base, emails, n, deadline, result) for n in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


async def register_client(base: str, index: int, stop: asyncio.Event, *, seconds: float) -> int:
    """Register new accounts back to back until told to stop (or the time bound); returns
    how many succeeded."""
    done = 0
    deadline = time.perf_counter() + seconds
    async with browser_session(base) as client:
        n = 0
        while not stop.is_set() and time.perf_counter() < deadline and n < MAX_OPERATIONS:
            name = f"load{index}x{n}"
            n += 1
            form = {
                "username": name,
                "email": f"{name}@example.com",
                "password": "correct horse battery",
                "confirm_password": "correct horse battery",
            }
            try:
                async with client.get("/register") as page:
                    form["csrf_token"] = csrf_token(await page.text())
                async with client.post("/register", data=form, allow_redirects=False) as response:
                    done += response.status == 302
            except (aiohttp.ClientError, TimeoutError, RuntimeError):
                continue
    return done


async def login_sampler(base: str, *, seconds: float, every: float = 0.02) -> LoadResult:
    """GET /login at a steady pace and record each response time."""
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + seconds
    async with browser_session(base) as client:
        while time.perf_counter() < deadline and len(result.latencies) < MAX_OPERATIONS:
            begun = time.perf_counter()
            try:
                async with client.get("/login") as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                result.latencies.append(time.perf_counter() - begun)
            else:
                result.errors += 1
            await asyncio.sleep(max(0.0, every - (time.perf_counter() - begun)))
    result.seconds = time.perf_counter() - started
    return result
