"""The seeds' "send an email from the shell" step, through real processes:
``python -m web send-test-email`` -> outbox + Redis -> ``python -m worker`` -> SMTP."""

from __future__ import annotations

import asyncio
import email.utils
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from arq.connections import ArqRedis

from devstack.mailsink import MailSink
from shared.jobs import emails_due_key
from shared.settings import Settings
from tests.support import ROOT, settings_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_db")]


async def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "web", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_send_test_email_is_delivered_by_the_worker_process(
    settings: Settings, queue: ArqRedis, smtp: MailSink
) -> None:
    env = settings_env(settings)
    result = await run_cli(env, "send-test-email", "you@example.com")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert job_id.startswith(f"{settings.QUEUE_NAME}:email:")
    # The email is announced before any worker runs.
    email_id = job_id.rpartition(":")[2]
    assert await queue.zscore(emails_due_key(settings.QUEUE_NAME), email_id) is not None

    worker = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        await wait_for(lambda: len(smtp.messages) == 1, timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(worker.communicate, timeout=30)
    assert worker.returncode == 0, output
    assert "Traceback" not in output

    (received,) = smtp.messages
    message = received.message
    assert received.envelope_to == ["you@example.com"]
    assert message["From"] == "Accounts <noreply@accounts.test>"
    assert message["To"] == "you@example.com"
    assert message["Subject"] == "test subject"
    assert message["Message-ID"].startswith(f"<outbox.{email_id}.")
    sent = email.utils.parsedate_to_datetime(message["Date"])
    assert abs(datetime.now(UTC) - sent) < timedelta(minutes=1)
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert received.part("text/plain").startswith("text body")
    assert "HTML body" in received.part("text/html")


async def test_send_test_email_refuses_a_bad_address(settings: Settings) -> None:
    result = await run_cli(settings_env(settings), "send-test-email", "not an address")
    assert result.returncode == 2
    assert "not a valid email address" in result.stderr
    assert "Traceback" not in result.stderr
