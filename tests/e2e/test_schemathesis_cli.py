"""The Schemathesis command line, as an outside tester would run it, against the live
server's OpenAPI description: every phase (examples, coverage, fuzzing, stateful) and every
check, signed in as a real account, with the rate limits raised for the run. It must find
nothing."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import func, update

from shared import passwords
from shared.db import SessionMaker
from shared.models import User
from shared.settings import Settings
from tests.e2e.identity_peers import Person
from tests.e2e.test_identity_provider import registered
from tests.support import ROOT, Stack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_db")]

UNLIMITED = 10**6
SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
PASSWORD = "correct horse battery"


async def test_schemathesis_finds_nothing(
    settings: Settings, queue: Any, sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    stack = Stack(
        settings,
        tmp_path,
        POSTS_PER_MINUTE=UNLIMITED,
        REGISTRATIONS_PER_MINUTE=UNLIMITED,
        LOGIN_ACCOUNT_CEILING=UNLIMITED,
        LOGIN_FAILURES_BEFORE_LOCK=UNLIMITED,
    )
    try:
        await wait_for(stack.up, timeout=60, every=0.2)
        account = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            assert (await client.post("/api/v1/register", json=account)).status_code == 202
        await wait_for(lambda: count_users(sessionmaker), timeout=30)
        async with sessionmaker() as session, session.begin():
            await session.execute(update(User).values(confirmed_at=func.now()))
        # A fresh sign-in for each run, in sudo mode, so that the sensitive operations are
        # exercised past their proof. Those that end the session (changing the password
        # gives it a new id, signing out and deleting the account end it) each run on their
        # own, after the others, with the password put back before each sign-in.
        ending = "password/change|logout|account/delete"
        # The identity provider's endpoints run with an application's credentials instead:
        # a confidential client's (token, introspection, revocation) and a person's access
        # token (userinfo).
        basic, bearer = await oauth_credentials(stack, settings, sessionmaker)
        # (First: the runs after them may end the sign-in the access token came from.)
        for selection, credentials in (
            (["--include-path-regex", "^/oauth/(token|introspect|revoke)$"], basic),
            (["--include-path", "/oauth/userinfo"], bearer),
            (["--exclude-path-regex", f"^(/api/v1/({ending})|/oauth/.*)$"], None),
            (["--include-path", "/api/v1/password/change"], None),
            (["--include-path", "/api/v1/logout"], None),
            (["--include-path", "/api/v1/account/delete"], None),
        ):
            cookie = await sign_in(stack.base_url, sessionmaker, account)
            header = credentials or f"Cookie: QUART_AUTH={cookie}"
            command = [
                SCHEMATHESIS,
                "--config-file", str(ROOT / "schemathesis.toml"),
                "run",
                f"{stack.base_url}/api/v1/openapi.json",
                *selection,
                "--checks", "all",
                "--phases", "examples,coverage,fuzzing,stateful",
                "--max-examples", "15",
                "--seed", "20261123",
                "--request-timeout", "20",
                "--header", header,
                "--no-color",
            ]  # fmt: skip
            result = await asyncio.to_thread(
                subprocess.run,
                command,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
                cwd=tmp_path,
            )
            report = result.stdout + result.stderr
            (tmp_path / "schemathesis.txt").open("a").write(report)
            assert result.returncode == 0, report[-6000:]
            # Only the sign-in call itself may answer nothing but 401 (random credentials):
            # every other operation was exercised with a live session.
            assert unauthorized(report) <= {"POST /api/v1/login"}, report[-3000:]
    finally:
        stack.stop()


async def oauth_credentials(
    stack: Stack, settings: Settings, sessionmaker: SessionMaker
) -> tuple[str, str]:
    """An ``Authorization`` header for a confidential client (Basic), and one with a
    signed-in person's access token (Bearer)."""
    client_id, secret = registered(
        settings, "--name", "Fuzzed", "--redirect-uri", f"{stack.base_url}/cb", "--first-party",
        "--grant", "authorization_code", "--grant", "refresh_token",
        "--grant", "client_credentials",
    )  # fmt: skip
    assert secret is not None
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    person = Person(stack.base_url)
    try:
        await person.sign_in()
        query = urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": f"{stack.base_url}/cb",
            "scope": "openid email profile",
        })  # fmt: skip
        back = await person.authorize(f"/oauth/authorize?{query}", f"{stack.base_url}/cb")
        code = parse_qs(urlsplit(back).query)["code"][0]
        answer = await person.http.post(
            "/oauth/token",
            data={"grant_type": "authorization_code", "code": code,
                  "redirect_uri": f"{stack.base_url}/cb"},
            auth=(client_id, secret),
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
    finally:
        await person.close()
    return f"Authorization: Basic {basic}", f"Authorization: Bearer {answer.json()['access_token']}"


async def count_users(sessionmaker: SessionMaker) -> bool:
    async with sessionmaker() as session:
        return bool(await session.scalar(func.count(User.id)))


def unauthorized(report: str) -> set[str]:
    """The operations Schemathesis' warnings list as answering only 401/403."""
    listed: set[str] = set()
    for block in report.split("Unauthorized (")[1:]:
        for line in block.splitlines()[1:]:
            if not line.strip().startswith("- "):
                break
            listed.add(line.strip().removeprefix("- "))
    return listed


async def sign_in(base_url: str, sessionmaker: SessionMaker, account: dict[str, str]) -> str:
    """The account's password as it was registered (a run may have changed it), and a new
    session cookie."""
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.email == account["email"])
            .values(password_hash=await passwords.hash_password(PASSWORD))
        )
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        signed_in = await client.post(
            "/api/v1/login", json={"email": account["email"], "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        return signed_in.cookies["QUART_AUTH"]
