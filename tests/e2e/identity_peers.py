"""What the identity provider's end-to-end tests share: an account to sign in with, a person
in a browser-like HTTP client (cookies, CSRF tokens, the consent page) walking a relying
party's authorization URL to its callback, and the npm peers' installation."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import update

from shared.db import SessionMaker
from shared.models import User
from shared.passwords import hash_password
from tests.support import CSRF, ROOT, add_accounts

PASSWORD = "correct horse battery"
PEERS = ROOT / "tests" / "peers"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


async def account(sessionmaker: SessionMaker, email: str = "alice@example.com") -> int:
    """A confirmed account with PASSWORD."""
    (user_id,) = await add_accounts(sessionmaker, [email], await hash_password(PASSWORD))
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(User).where(User.id == user_id).values(confirmed_at=datetime.now(UTC))
        )
    return user_id


class Person:
    """Someone at a browser: signs in through the forms and answers the consent page."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30, follow_redirects=False)

    async def close(self) -> None:
        await self.http.aclose()

    async def sign_in(self, email: str = "alice@example.com") -> None:
        page = await self.http.get("/login")
        answer = await self.http.post(
            "/login", data={"csrf_token": _csrf(page.text), "email": email, "password": PASSWORD}
        )
        assert answer.status_code == 302, answer.text[:300]

    async def authorize(self, url: str, redirect_uri: str, *, consent: bool = True) -> str:
        """Follow ``url`` through sign-in and consent to the relying party's callback; the
        callback URL (with its code, state and iss)."""
        for _ in range(10):
            answer = await self.http.get(url)
            if answer.status_code == 200 and "/oauth/consent" in answer.text and consent:
                fields = {k: html.unescape(v) for k, v in HIDDEN.findall(answer.text)}
                answer = await self.http.post(
                    "/oauth/consent",
                    data={**fields, "csrf_token": _csrf(answer.text), "decision": "allow"},
                )
            assert answer.status_code in (302, 303), (answer.status_code, answer.text[:500])
            url = answer.headers["Location"]
            if url.startswith(redirect_uri):
                return url
            if url.startswith("/login"):
                await self.sign_in()
                url = httpx.URL(self.base_url + url).params.get("next") or url
        raise AssertionError("too many redirects")


def _csrf(text: str) -> str:
    match = CSRF.search(text)
    assert match, text[:300]
    return match.group(1)


def node_peers() -> Path:
    """tests/peers with its npm packages installed (scripts/bootstrap.sh installs them; a
    checkout that skipped it gets them here, from the lock file)."""
    if not (PEERS / "node_modules" / "openid-client").is_dir():
        npm = shutil.which("npm")
        assert npm, "npm is needed for the openid-client peer"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True, timeout=300)
    return PEERS
