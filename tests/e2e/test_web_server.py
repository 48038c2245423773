"""``python -m web`` as operators run it: WEB_WORKERS server processes behind one port, an
access log without query strings, HTTP/1.1 keep-alive, no server banner, and a graceful
stop that finishes the request in flight and the writes deferred past the answers."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shared.db import SessionMaker
from shared.jobs import EmailKind
from shared.models import Email, User
from shared.settings import Settings
from tests.support import CSRF, ROOT, add_accounts, free_port, reset_requests, settings_env

pytestmark = [pytest.mark.slow]


class Web:
    """One ``python -m web`` with its output in a file."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log = log
        env = settings_env(
            settings.with_values(
                PORT=self.port,
                BASE_URL=f"http://127.0.0.1:{self.port}",
                METRICS_PORT=self.metrics_port,
                LOG_LEVEL="INFO",
            )
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "web"],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self.up():
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the web service did not start"
            time.sleep(0.1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1):
                return True
        except OSError:
            return False

    def pids(self) -> set[int]:
        """The server processes (multiprocessing's resource tracker is a child too)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = {int(pid) for pid in children.read_text().split()}
        return {pid for pid in pids if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


@pytest.fixture
def web(settings: Settings, tmp_path: Path) -> Any:
    server = Web(settings.with_values(WEB_WORKERS=2), tmp_path / "web.log")
    yield server
    server.stop()


def metric(port: int, line_start: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)
    )


def test_several_processes_share_the_port_and_their_metrics_add_up(web: Web) -> None:
    assert len(web.pids()) == 2
    for _ in range(40):  # new connections: the kernel hands them to either process
        with urllib.request.urlopen(f"http://127.0.0.1:{web.port}/login", timeout=5) as page:
            assert page.status == 200
    served = metric(
        web.metrics_port, 'accounts_http_requests_total{method="GET",route="/login",status="200"}'
    )
    assert served == 40, "one scrape counts the requests of every process"


def test_access_log_has_paths_without_query_strings(web: Web) -> None:
    url = f"http://127.0.0.1:{web.port}/login?next=/account&token=s3cret-in-query"
    with urllib.request.urlopen(url, timeout=5) as page:
        assert page.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{web.port}/confirm/s3cret-in-path", timeout=5):
        pass
    assert web.stop() == 0
    log = web.log.read_text()
    assert '"GET /login" 200' in log
    assert '"GET /confirm/[redacted]"' in log
    assert "s3cret" not in log and "?" not in "".join(
        line for line in log.splitlines() if "web.access" in line
    )


def test_keep_alive_and_no_server_banner(web: Web) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    try:
        connection.request("GET", "/login")
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        connection.request("GET", "/healthz")
        second = connection.getresponse()
        second.read()
        assert connection.sock is sock, "the second request reused the connection"
        assert (first.status, second.status) == (200, 200)
        assert first.getheader("Server") is None
        assert first.getheader("Connection") != "close"
    finally:
        connection.close()


def test_sigterm_finishes_the_request_in_flight_then_stops(web: Web) -> None:
    body = b"email=someone%40example.com&csrf_token=x"
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as client:
        client.sendall(
            b"POST /reset_password HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10]
        )
        time.sleep(0.3)  # the app is now waiting for the rest of the body
        web.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # stopping, but not before this request is answered
        assert web.process.poll() is None
        client.sendall(body[10:])
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    status = answer.split(b"\r\n", 1)[0]
    # The whole answer (a made-up CSRF token is refused with a page saying so).
    assert status == b"HTTP/1.1 400 Bad Request", answer[:300]
    assert answer.rstrip().endswith(b"</html>")
    assert web.process.wait(30) == 0
    assert "Traceback" not in web.log.read_text()


async def test_sigterm_commits_the_writes_deferred_past_the_last_answers(
    settings: Settings, sessionmaker: SessionMaker, clean_db: None, tmp_path: Path
) -> None:
    """Reset requests answered, then SIGTERM while their deferred writes (committed together
    in batches) wait on the accounts' rows: the processes finish those writes before they
    exit, and every reset link is in the outbox."""
    emails = [f"person{n}@example.com" for n in range(80)]
    await add_accounts(sessionmaker, emails)
    web = Web(settings.with_values(WEB_WORKERS=2, POSTS_PER_MINUTE=10_000), tmp_path / "web.log")
    try:
        async with sessionmaker() as blocker, blocker.begin():
            await blocker.execute(select(User.id).with_for_update())  # the writes must wait
            await reset_requests(web.base_url, emails, clients=40)  # answered all the same
            web.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1)
            assert web.process.poll() is None, "stopping, but not before the deferred writes"
        code = await asyncio.to_thread(web.process.wait, 30)
    finally:
        web.stop()
    assert code == 0
    async with sessionmaker() as session:
        queued = await session.scalars(select(Email.recipient).where(Email.kind == EmailKind.RESET))
        assert sorted(queued) == sorted(emails)
    assert "Traceback" not in web.log.read_text()


async def test_a_flood_cannot_run_answers_ahead_of_the_writes_they_defer(
    settings: Settings, sessionmaker: SessionMaker, clean_db: None, tmp_path: Path
) -> None:
    """DEFERRED_WORK_LIMIT=4 and the accounts' rows locked, so the reset links' writes cannot
    finish: the server answers four reset requests, then holds the others (it still serves
    pages) until the writes go through; then every request is answered, every link written."""
    emails = [f"person{n}@example.com" for n in range(16)]
    await add_accounts(sessionmaker, emails)
    web = Web(
        settings.with_values(WEB_WORKERS=1, POSTS_PER_MINUTE=10_000, DEFERRED_WORK_LIMIT=4),
        tmp_path / "web.log",
    )
    try:
        async with httpx.AsyncClient(base_url=web.base_url, timeout=30) as client:
            token = CSRF.search((await client.get("/reset-password")).text)
            assert token is not None

            async def reset(email: str) -> int:
                form = {"csrf_token": token.group(1), "email": email}
                return (await client.post("/reset-password", data=form)).status_code

            async with sessionmaker() as blocker, blocker.begin():
                await blocker.execute(select(User.id).with_for_update())
                posts = [asyncio.create_task(reset(email)) for email in emails]
                await asyncio.sleep(2)
                assert sum(post.done() for post in posts) == 4
                assert (await client.get("/reset-password")).status_code == 200
            assert await asyncio.gather(*posts) == [302] * len(emails)
    finally:
        web.stop()
    async with sessionmaker() as session:
        queued = await session.scalars(select(Email.recipient).where(Email.kind == EmailKind.RESET))
        assert sorted(queued) == sorted(emails)
    assert "Traceback" not in web.log.read_text()


def _exchange(port: int, request: bytes, *, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_request_heads_are_bounded_in_size_fields_and_time(
    settings: Settings, tmp_path: Path
) -> None:
    """A 10 MB header is 431 after its first chunks (never buffered whole), so are too many
    fields; a head that drips in is 408 at the deadline; a client's connections past the cap
    are closed; an ordinary request on the same server is served."""
    web = Web(
        settings.with_values(WEB_WORKERS=1, WEB_HEADER_TIMEOUT=1.0, WEB_CONNECTIONS_PER_CLIENT=8),
        tmp_path / "web.log",
    )
    try:
        huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (10 * 1024 * 1024)
        with socket.create_connection(("127.0.0.1", web.port), timeout=5) as sock:
            # Refused while still sending: the point.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(huge)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]

        many = b"".join(b"X-F%d: v\r\n" % n for n in range(150))
        answer = _exchange(web.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]

        with socket.create_connection(("127.0.0.1", web.port), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            answer = b""
            for _ in range(40):
                try:
                    sock.sendall(b"X")
                except (BrokenPipeError, ConnectionResetError):
                    break
                sock.settimeout(0.1)
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                answer += chunk
                if not chunk or answer.startswith(b"HTTP/1.1 408"):
                    break
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert time.monotonic() - started < 3

        held = [socket.create_connection(("127.0.0.1", web.port), timeout=5) for _ in range(9)]
        try:
            held[-1].settimeout(3)
            assert held[-1].recv(4096).startswith(b"HTTP/1.1 503 ")
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        with urllib.request.urlopen(f"{web.base_url}/healthz", timeout=5) as ok:
            assert ok.status == 200
    finally:
        web.stop()
    assert "request headers too large" in web.log.read_text()
