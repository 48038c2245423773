"""The README's run command: `python -m devstack` (what `make run` starts) brings up web +
worker on embedded PostgreSQL, valkey and the SMTP sink, delivers `send-test-email`, and stops
cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import smtplib
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from devstack.mailsink import free_port
from tests.support import ROOT, wait_for

pytestmark = pytest.mark.slow


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


def devstack_env(tmp_path: Path, port: int) -> dict[str, str]:
    """A stack of its own: its var/ folder and free ports for everything it listens on."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONUNBUFFERED": "1",
        "DEVSTACK_VAR": str(tmp_path / "var"),
        "DEVSTACK_REDIS_PORT": str(free_port()),
        "DEVSTACK_SMTP_PORT": str(free_port()),
        "PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "WORKER_METRICS_PORT": str(free_port()),
        "BOUNCE_LISTEN": f"127.0.0.1:{free_port()}",
    }


def run_devstack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_devstack(tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[str, str], Path]:
    """`python -m devstack` with a stack of its own; its output goes to devstack.log."""
    env = devstack_env(tmp_path, free_port())
    log_path = tmp_path / "devstack.log"
    with log_path.open("w") as log:
        stack = subprocess.Popen(
            [sys.executable, "-m", "devstack"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return stack, env, log_path


async def test_run_command_serves_and_delivers_then_stops_cleanly(tmp_path: Path) -> None:
    stack, env, log_path = start_devstack(tmp_path)
    try:
        base = f"http://127.0.0.1:{env['PORT']}"
        await wait_for(lambda: "ready: open" in log_path.read_text(), timeout=120, every=0.2)
        assert await asyncio.to_thread(get, f"{base}/readyz") == 200

        send = await asyncio.to_thread(
            run_devstack, env, "exec", "python", "-m", "web", "send-test-email", "you@example.com"
        )
        assert send.returncode == 0, send.stderr
        assert send.stdout.strip().startswith("arq:queue:email:")

        # A second `make run` in the same checkout says where the first one is.
        second = await asyncio.to_thread(run_devstack, env)
        assert second.returncode == 1
        assert (
            second.stderr.strip()
            == f"devstack: already running at http://localhost:{env['PORT']} (stop it with "
            "Ctrl-C there)"
        )

        mail_dir = tmp_path / "var" / "mail"
        await wait_for(lambda: mail_dir.is_dir() and any(mail_dir.glob("*.eml")), timeout=30)
        (saved,) = mail_dir.glob("*.eml")
        message = email.message_from_bytes(saved.read_bytes(), policy=email.policy.default)
        assert message["Subject"] == "test subject"
        assert message["To"] == "you@example.com"
        # The bounce receiver is up too, and takes mail for the dev bounce domain only.
        host, _, bounce_port = env["BOUNCE_LISTEN"].rpartition(":")
        assert "bounce receiver for bounces.localhost listening" in log_path.read_text()
        with smtplib.SMTP(host, int(bounce_port), timeout=5) as client:
            assert client.noop()[0] == 250
    finally:
        stack.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(stack.wait, 60)
    output = log_path.read_text()
    assert code == 0, output
    assert "Traceback" not in output
    assert "stopping web, worker and the bounce receiver" in output
    assert output.rstrip().endswith("stopped"), output[-500:]
    # A quiet terminal: the periodic sweeps say nothing, the test message's only link (the
    # footer's site address) is not printed, and the stack is served on localhost (browsers
    # refuse passkeys on an IP address).
    assert "cron:" not in output
    assert "  link: " not in output
    assert f"ready: open http://localhost:{env['PORT']}" in output
    assert not (tmp_path / "var" / "devstack.env").exists()


def test_a_taken_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_devstack(devstack_env(tmp_path, port))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"devstack: port {port} (the web service) is taken on 127.0.0.1; set PORT or free it"
    )
    assert not (tmp_path / "var" / "postgres").exists()  # nothing was started


async def test_the_stack_says_when_its_postgresql_dies(tmp_path: Path) -> None:
    """The embedded PostgreSQL killed under the running stack: one clear line, and the
    stack stops (instead of tracebacks from web and worker at every request and sweep)."""
    stack, _, log_path = start_devstack(tmp_path)
    try:
        await wait_for(lambda: "ready: open" in log_path.read_text(), timeout=120, every=0.2)
        pid_file = tmp_path / "var" / "postgres" / "postmaster.pid"
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        code = await asyncio.to_thread(stack.wait, 60)
    finally:
        if stack.poll() is None:
            stack.kill()
    output = log_path.read_text()
    assert code == 1, output
    assert "embedded PostgreSQL (var/postgres) has stopped; stopping the stack" in output
    assert output.count("Traceback") == 0, output
