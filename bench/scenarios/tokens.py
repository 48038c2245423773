"""Scenario 11: the identity provider's token endpoint (exchanging a code) and introspection
under load, beside the bare cost of signing a token with the same key on the same machine.

Set-up: a confidential first-party client (``python -m web oidc clients add``), SESSIONS
people signed in through the form, and CODES authorization codes asked for through
``/oauth/authorize`` (first-party: the answer is the code at once). Then CLIENTS concurrent
connections exchange the codes (each answer: an ID token and an access token, two RS256
signatures, and a refresh token), and then introspect the access tokens for a few seconds.
CPU per operation is each component's CPU over the window, from /proc, divided by the
operations; the bare cost is joserfc signing a token of the same claims with the same
(unsealed) key, in one process on one core.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg

from bench.cpu import Component, CpuMeter
from bench.harness import ROOT, Bench, ms, percentile
from bench.loadgen import csrf_token

SESSIONS = 32
CODES = 3000
CLIENTS = 64
CALLBACK = "http://127.0.0.1:9/callback"  # never visited: the code is read off the redirect

BARE_SIGNING = """
import asyncio, time
from joserfc import jwt
from shared.settings import load_settings
from shared.services.context import ServiceContext
from shared.services.identity import keys

async def main():
    ctx = ServiceContext.open(load_settings(), application_name="bench", pool_size=1)
    claims = {"iss": "http://127.0.0.1", "sub": "0b3a6f0e-5b8e-4b8a-9d1e-1f2e3d4c5b6a",
              "aud": "client", "client_id": "client", "iat": 0, "exp": 600, "jti": "x" * 22,
              "scope": "openid email profile", "auth_time": 0, "acr": "a", "amr": ["pwd"],
              "sid": "s" * 16, "gid": "g" * 24}
    for alg in ("RS256", "ES256"):
        signer = await keys.signer(ctx, alg)
        header = {"alg": alg, "kid": signer.kid, "typ": "at+jwt"}
        n, started = 0, time.process_time()
        while time.process_time() - started < 2:
            jwt.encode(header, claims, signer.key)
            n += 1
        print(alg, (time.process_time() - started) / n)
    await ctx.close()

asyncio.run(main())
"""


def _register_client(env: dict[str, str]) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "web", "oidc", "clients", "add", "--name", "Bench",
         "--redirect-uri", CALLBACK, "--first-party"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    printed = dict(
        line.split(": ", 1) for line in done.stdout.splitlines() if line.startswith("client_")
    )
    return printed["client_id"], printed["client_secret"]


def _bare_signing(env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", BARE_SIGNING],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {
        alg: float(seconds)
        for alg, seconds in (line.split() for line in done.stdout.split("\n") if line)
    }


async def _codes(base: str, client_id: str) -> tuple[list[str], float]:
    """CODES codes from SESSIONS signed-in people; and the seconds asking took."""
    query = (
        f"/oauth/authorize?response_type=code&client_id={client_id}"
        f"&redirect_uri={CALLBACK}&scope=openid+email+profile&nonce=n"
    )
    codes: list[str] = []

    async def person(n: int) -> None:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(base_url=base, cookie_jar=jar) as http:
            async with http.get("/login") as page:
                token = csrf_token(await page.text())
            form = {"csrf_token": token, "email": f"user{n}@example.com",
                    "password": "correct horse battery"}  # fmt: skip
            async with http.post("/login", data=form, allow_redirects=False) as answer:
                assert answer.status == 302, answer.status
            for _ in range(CODES // SESSIONS):
                async with http.get(query, allow_redirects=False) as answer:
                    location = answer.headers["Location"]
                codes.append(parse_qs(urlsplit(location).query)["code"][0])

    started = time.monotonic()
    await asyncio.gather(*(person(n) for n in range(SESSIONS)))
    return codes, time.monotonic() - started


async def _closed_loop(
    base: str, auth: str, bodies: list[dict[str, str]], path: str, *, seconds: float | None
) -> tuple[list[float], list[str], float]:
    """CLIENTS connections POSTing ``bodies`` (each once; with ``seconds``, cycling until
    then): latencies, the answers' access tokens (token endpoint), the window."""
    latencies: list[float] = []
    tokens: list[str] = []
    queue = list(reversed(bodies))
    deadline = time.monotonic() + seconds if seconds else None
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    headers = {"Authorization": auth}

    async def one(http: aiohttp.ClientSession) -> None:
        index = 0
        while True:
            if deadline is None:
                if not queue:
                    return
                body = queue.pop()
            else:
                if time.monotonic() > deadline:
                    return
                body = bodies[index % len(bodies)]
                index += 1
            sent = time.monotonic()
            async with http.post(path, data=body, headers=headers) as answer:
                payload = await answer.json()
                assert answer.status == 200, payload
            latencies.append(time.monotonic() - sent)
            if "access_token" in payload:
                tokens.append(payload["access_token"])

    async with aiohttp.ClientSession(base_url=base, connector=connector) as http:
        started = time.monotonic()
        await asyncio.gather(*(one(http) for _ in range(CLIENTS)))
        window = time.monotonic() - started
    return latencies, tokens, window


def _meter(web_pid: int) -> CpuMeter:
    return CpuMeter([
        Component("web", (web_pid,)),
        Component("PostgreSQL", names=("postgres",)),
        Component("Redis", names=("redis-server", "valkey-server")),
    ])  # fmt: skip


async def _confirm_people(env: dict[str, str]) -> None:
    """The seeded accounts are unconfirmed (their scenarios do not sign in); these must."""
    connection = await asyncpg.connect(
        env["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
    )
    try:
        names = [f"user{n}" for n in range(SESSIONS)]
        await connection.execute(
            "UPDATE users SET confirmed_at = now() WHERE username = ANY($1::text[])", names
        )
    finally:
        await connection.close()


async def tokens_under_load(bench: Bench) -> None:
    env = dict(bench.env)
    await _confirm_people(env)
    client_id, secret = _register_client(env)
    auth = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    web, base = bench.start_web(env, "ours")
    try:
        codes, asking = await _codes(base, client_id)
        exchanges = [
            {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
            for code in codes
        ]
        meter = _meter(web.popen.pid)
        meter.start()
        latencies, access_tokens, window = await _closed_loop(
            base, auth, exchanges, "/oauth/token", seconds=None
        )
        exchange_cpu = meter.stop()
        meter = _meter(web.popen.pid)
        meter.start()
        looks = [{"token": token} for token in access_tokens]
        seen, _, looked = await _closed_loop(
            base, auth, looks, "/oauth/introspect", seconds=bench.seconds
        )
        introspect_cpu = meter.stop()
    finally:
        web.stop()
    bare = _bare_signing(env)

    def per(cpu: dict[str, float], count: int) -> str:
        return ", ".join(f"{k} {v / max(1, count) * 1000:.2f} ms" for k, v in cpu.items())

    rows = [
        ["code exchange (ID + access + refresh token)", f"{len(latencies) / window:.0f}",
         ms(percentile(latencies, 50)), ms(percentile(latencies, 99)),
         per(exchange_cpu, len(latencies))],
        ["introspection of an access token", f"{len(seen) / looked:.0f}",
         ms(percentile(seen, 50)), ms(percentile(seen, 99)), per(introspect_cpu, len(seen))],
        ["bare joserfc signature, RS256 (same key, one core)", f"{1 / bare['RS256']:.0f}",
         f"{bare['RS256'] * 1000:.2f}", "", f"{bare['RS256'] * 1000:.2f} ms"],
        ["bare joserfc signature, ES256 (same machine)", f"{1 / bare['ES256']:.0f}",
         f"{bare['ES256'] * 1000:.2f}", "", f"{bare['ES256'] * 1000:.2f} ms"],
    ]  # fmt: skip
    bench.table(
        "11. Identity provider: the token endpoint and introspection",
        ["operation", "per second", "p50 ms", "p99 ms", "CPU per operation"],
        rows,
        f"{CLIENTS} concurrent connections, `python -m web` as shipped; {len(codes)} codes "
        f"asked for first through `/oauth/authorize` by {SESSIONS} signed-in people "
        f"({len(codes) / asking:.0f} codes/s), each exchanged once (client_secret_basic). "
        "A code exchange signs two tokens, so its physical limit on this machine is about "
        f"{1 / (2 * bare['RS256']):.0f} per second per core in signatures alone. "
        f"Introspection: {bench.seconds:.0f} s over the access tokens just issued.",
    )
