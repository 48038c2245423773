"""A whole journey through the real web and worker processes, then a search of everything
they logged: no password, no token, no full email link."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.mailsink import MailSink
from shared.settings import Settings
from tests.support import CSRF, Stack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_db")]
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "tr0ub4dor and then some"


async def submit(client: httpx.AsyncClient, path: str, data: dict[str, str]) -> httpx.Response:
    page = await client.get(path)
    match = CSRF.search(page.text)
    assert match, path
    return await client.post(path, data={"csrf_token": match.group(1), **data})


def link(smtp: MailSink, subject: str) -> str:
    message = [m for m in smtp.messages if m.message["Subject"] == subject][-1]
    (found,) = [
        url
        for url in message.links
        if ("/confirm/" in url or "/reset-password/" in url or "/not-me/" in url)
        and not url.endswith("/resend")  # the confirmation email's "ask for a new one"
    ]
    return found


async def test_logs_never_carry_passwords_tokens_or_links(
    settings: Settings, queue: Any, smtp: MailSink, tmp_path: Path
) -> None:
    stack = Stack(settings.with_values(LOG_LEVEL="DEBUG"), tmp_path)
    secrets: list[str] = [PASSWORD, NEW_PASSWORD]
    try:
        await wait_for(stack.up, timeout=60, every=0.2)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            await submit(
                client,
                "/register",
                {
                    "username": "alice",
                    "email": "alice@example.com",
                    "password": PASSWORD,
                    "confirm_password": PASSWORD,
                },
            )
            await wait_for(lambda: len(smtp.messages) == 1, timeout=30)
            confirm = link(smtp, "Confirm your email address")
            secrets.append(confirm)
            await submit(client, confirm.removeprefix(stack.base_url), {})
            response = await submit(
                client, "/login", {"email": "alice@example.com", "password": PASSWORD}
            )
            assert response.status_code == 302
            await submit(
                client,
                "/account/password",
                {
                    "current_password": PASSWORD,
                    "password": NEW_PASSWORD,
                    "confirm_password": NEW_PASSWORD,
                },
            )
            await wait_for(lambda: len(smtp.messages) == 2, timeout=30)
            secrets.append(link(smtp, "Your password was changed"))
            await client.post("/logout", data={})  # refused (no CSRF): logged as a 400
            client.cookies.clear()
            await submit(client, "/reset-password", {"email": "alice@example.com"})
            await wait_for(lambda: len(smtp.messages) == 3, timeout=30)
            reset = link(smtp, "Reset your password")
            secrets.append(reset)
            response = await submit(
                client,
                reset.removeprefix(stack.base_url),
                {"password": PASSWORD, "confirm_password": PASSWORD},
            )
            assert response.status_code == 302
            # A wrong password on the API, and a token in a JSON body.
            await client.post(
                "/api/v1/login", json={"email": "alice@example.com", "password": "hunter2-wrong"}
            )
            await client.post("/api/v1/confirm", json={"token": confirm.rsplit("/", 1)[1]})
            secrets.append("hunter2-wrong")
    finally:
        stack.stop()

    tokens = [url.rsplit("/", 1)[1] for url in secrets if url.startswith("http")]
    logs = {path.name: path.read_text() for path in tmp_path.glob("*.log")}
    assert "POST /reset-password/[redacted]" in logs["web.log"]  # the requests were logged
    for name, text in logs.items():
        for secret in [*secrets, *tokens]:
            assert secret not in text, f"{name} contains {secret[:12]}..."
