"""What every scenario uses: the services and processes a run starts (the web service under
each server set-up, workers, SMTP sinks), the database it prepares, and how figures are
printed and recorded."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.cpu import Component, CpuMeter
from devstack.servers import Services, drop_database, free_port

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
    ours: bool  # this service (with its worker) or a reference
    env: dict[str, str] = field(default_factory=dict)  # on top of the bench's
    ready: str = "/reset_password"  # a page that answers once it serves

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
    # What teams pick today: Django + django-allauth (bench/allauth_app), served as Django
    # is deployed (gunicorn's threaded workers, 4 x 4), sending its emails in the request.
    "allauth": Server(
        "django-allauth, gunicorn gthread 4 x 4",
        "-m gunicorn -k gthread -w 4 --threads 4 -b 127.0.0.1:{port} --log-level warning "
        "bench.allauth_app.wsgi:application",
        ours=False,
        env={"DJANGO_SETTINGS_MODULE": "bench.allauth_app.settings"},
        ready="/accounts/password/reset/",
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
    link: float = 0.0  # one-way delay of every chunk (bench/sink.py --link)
    pipelining: bool = True
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
                "--link",
                str(self.link),
                *(() if self.pipelining else ("--no-pipelining",)),
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
        wait_http(f"{base}{SERVERS[app].ready}", process)
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
        "WEB_CONNECTIONS_PER_CLIENT": "0",  # every client of the bench is one address
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
    await prepare_allauth(env, dsn, password_hash)
    from arq.connections import ArqRedis

    redis = ArqRedis.from_url(services.redis_url)
    await redis.flushdb()
    await redis.aclose()
    return env


async def prepare_allauth(env: dict[str, str], dsn: str, password_hash: str) -> None:
    """django-allauth's tables in the same database (Django's own migrations), with the same
    USERS accounts, each address verified, and the same argon2 hash (Django writes it as
    "argon2" + the encoded hash)."""
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={
            **env,
            "DJANGO_SETTINGS_MODULE": "bench.allauth_app.settings",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": "25",
        },
        check=True,
        capture_output=True,
    )
    connection = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        await connection.copy_records_to_table(
            "auth_user",
            records=[
                (
                    n + 1,
                    "argon2" + password_hash,
                    False,
                    f"user{n}",
                    "",
                    "",
                    f"user{n}@example.com",
                    False,
                    True,
                    now,
                )
                for n in range(USERS)
            ],
            columns=[
                "id",
                "password",
                "is_superuser",
                "username",
                "first_name",
                "last_name",
                "email",
                "is_staff",
                "is_active",
                "date_joined",
            ],
        )
        await connection.copy_records_to_table(
            "account_emailaddress",
            records=[(n + 1, f"user{n}@example.com", True, True) for n in range(USERS)],
            columns=["user_id", "email", "verified", "primary"],
        )
        await connection.execute(
            "SELECT setval(pg_get_serial_sequence('auth_user', 'id'), $1)", USERS
        )
    finally:
        await connection.close()


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


async def timed(run: Callable[[], Awaitable[object]], times: int = 20) -> float:
    """Median seconds of ``times`` runs."""
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await run()
        samples.append(time.perf_counter() - started)
    return percentile(samples, 50)


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
