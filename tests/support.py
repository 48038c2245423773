"""Helpers for tests: where the real services are, and small waiting utilities."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devstack.mailsink import free_port
from devstack.servers import EmbeddedPostgres, EmbeddedRedis, port_open

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


@dataclass
class Services:
    """The PostgreSQL server (as an asyncpg admin DSN and SQLAlchemy URL maker) and Redis URL
    the tests use, and anything started for them."""

    admin_dsn: str
    sqlalchemy_base: str  # e.g. postgresql+asyncpg://postgres@127.0.0.1:5432
    sqlalchemy_query: str  # e.g. "" or "?host=/socket/dir"
    redis_url: str
    started: list[object] = field(default_factory=list)

    def database_url(self, name: str) -> str:
        return f"{self.sqlalchemy_base}/{name}{self.sqlalchemy_query}"

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()  # type: ignore[attr-defined]


def discover_services() -> Services:
    """TEST_DATABASE_URL / TEST_REDIS_URL if set; else the machine's services on their usual
    ports; else embedded servers started from wheels."""
    started: list[object] = []

    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        query = f"?{parts.query}" if parts.query else ""
        admin_dsn = url.replace("+asyncpg", "")
    elif port_open("127.0.0.1", 5432):
        base, query = "postgresql+asyncpg://postgres@127.0.0.1:5432", ""
        admin_dsn = "postgresql://postgres@127.0.0.1:5432/postgres"
    else:
        postgres = EmbeddedPostgres(ROOT / "var" / "test-postgres")
        postgres.start()
        started.append(postgres)
        base, query = "postgresql+asyncpg://postgres@", f"?host={postgres.socket_dir}"
        admin_dsn = f"postgresql://postgres@/postgres?host={postgres.socket_dir}"

    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        if port_open("127.0.0.1", 6379):
            # A database number of its own, flushed between tests.
            redis_url = "redis://127.0.0.1:6379/15"
        else:
            redis = EmbeddedRedis(free_port())
            redis.start()
            started.append(redis)
            redis_url = redis.url
    return Services(admin_dsn, base, query, redis_url, started)


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
