"""Helpers for tests: where the real services are, and small waiting utilities."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.servers import free_port
from shared.db import SessionMaker
from shared.models import SignInSession, User
from shared.ratelimit import Limits
from shared.services.context import BackgroundTasks, ServiceContext
from shared.settings import Settings
from shared.tokens import Tokens

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0, every: float = 0.02
) -> None:
    """Poll until ``predicate`` is true; fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


async def stop_worker(worker: Any, task: asyncio.Task[Any]) -> None:
    """Stop an arq worker started with ``async_run()`` in a task.

    arq's close() cancels the worker's job tasks and may re-raise that cancellation; running
    it through gather keeps it from cancelling the test itself.
    """
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.gather(worker.close(), return_exceptions=True)


class Stack:
    """``python -m web`` and ``python -m worker`` as subprocesses on the test services."""

    def __init__(
        self,
        settings: Settings,
        logs: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        **overrides: object,
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://{host}:{self.port}"
        self.settings = settings.with_values(
            **{
                "BASE_URL": self.base_url,
                "PORT": self.port,
                "POSTS_PER_MINUTE": 100,
                "METRICS_PORT": free_port(),
                "WORKER_METRICS_PORT": free_port(),
                **overrides,
            }
        )
        env = settings_env(self.settings)
        self.logs = logs
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env=env,
                stdout=(logs / f"{module}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
            for module in ("web", "worker")
        ]

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a subprocess (web, worker, CLI) needs to see these settings."""
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = ",".join(value)
        env[name] = str(value)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def worker_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m worker ARGS`` with these settings, as an operator would run it."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "worker", *args],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


RUNNING_APPS: list[Any] = []  # Quart apps under test, whose background tasks workers await


async def settle() -> None:
    """Wait for the running apps' background tasks (work a request handed off)."""
    for app in RUNNING_APPS:
        while app.background_tasks:
            await asyncio.gather(*app.background_tasks, return_exceptions=True)


async def run_burst_worker(settings: Settings, **overrides: Any) -> None:
    """Run an in-process arq worker with these settings until its queue is empty, after the
    work the running apps handed to background tasks has queued its emails."""
    from worker.bootstrap import create_worker

    await settle()
    worker = create_worker(settings, burst=True, handle_signals=False, **overrides)
    try:
        await worker.main()
    finally:
        await asyncio.gather(worker.close(), return_exceptions=True)


def committing_context(
    settings: Settings, engine: AsyncEngine, sessionmaker: SessionMaker, queue: ArqRedis
) -> ServiceContext:
    """The use cases' context on real, committing connections (for what other connections or
    processes must see, and for concurrency); deferred work runs as tasks (``drain`` them)."""
    return ServiceContext(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        redis=queue,
        tokens=Tokens(settings.SECRET_KEY.get_secret_value()),
        limits=Limits(queue, key_prefix=settings.REDIS_KEY_PREFIX),
        defer=BackgroundTasks(),
    )


CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


async def add_accounts(
    sessionmaker: SessionMaker, emails: list[str], password_hash: str = "!"
) -> list[int]:
    """Accounts for these addresses (user0, user1, ...), in one statement; their ids."""
    async with sessionmaker() as session, session.begin():
        rows = [
            {"username": f"user{n}", "username_key": f"user{n}", "email": email,
             "email_key": email, "password_hash": password_hash}
            for n, email in enumerate(emails)
        ]  # fmt: skip
        return list(await session.scalars(insert(User).values(rows).returning(User.id)))


async def reset_requests(base_url: str, emails: list[str], clients: int) -> None:
    """Reset requests through the forms, ``clients`` browsers at a time."""

    async def browser(mine: list[str]) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            for email in mine:
                page = await client.get("/reset-password")
                match = CSRF.search(page.text)
                assert match, page.text[:200]
                answer = await client.post(
                    "/reset-password", data={"csrf_token": match.group(1), "email": email}
                )
                assert answer.status_code == 302, answer.text[:200]

    await asyncio.gather(*(browser(emails[n::clients]) for n in range(clients)))


def reset_payload(user: Any, secret: str) -> dict[str, Any]:
    """A reset link's payload for ``user``'s current generation and password, as the worker
    mints it (shared.tokens.ResetLink), for tests that forge or replay one."""
    from shared.tokens import ResetLink

    return ResetLink.of(user.id, user.reset_generation, user.password_hash, secret).payload()


async def age_authentications(sessionmaker: SessionMaker, seconds: int = 3600) -> None:
    """Every sign-in authenticated ``seconds`` ago: past REAUTHENTICATION_TIMEOUT, so the
    next sensitive change asks to re-authenticate (time travel, not sleep)."""
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(SignInSession).values(authenticated_at=func.now() - timedelta(seconds=seconds))
        )


# Debian's Chromium, which the browser tests drive (Playwright's own download fails here).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)
