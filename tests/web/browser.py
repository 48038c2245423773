"""A thin browser on top of Quart's test client: it reads the CSRF token from the page it
was served, as a browser submitting the form would, and reads flashes back from pages."""

from __future__ import annotations

import asyncio
import html
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from quart import Quart
from quart.typing import TestClientProtocol
from sqlalchemy import select

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
ALERT = re.compile(r'<div class="alert alert-(\w+)"[^>]*>\s*<span>(.*?)</span>', re.S)


BREAKABLE = re.compile(r"<wbr>|</?bdi>")


@dataclass
class Page:
    status: int
    text: str
    location: str | None
    headers: Any

    @property
    def flashes(self) -> list[tuple[str, str]]:
        return [
            (category, html.unescape(message)) for category, message in ALERT.findall(self.text)
        ]

    @property
    def csrf_token(self) -> str:
        match = CSRF.search(self.text)
        assert match, "no CSRF token on the page"
        return match.group(1)


class Browser:
    def __init__(self, app: Quart) -> None:
        self.app = app
        self.client: TestClientProtocol = app.test_client()

    async def get(self, path: str, *, follow: bool = False) -> Page:
        return await self._page(await self.client.get(path, follow_redirects=follow))

    async def post(self, path: str, data: dict[str, str], *, follow: bool = False) -> Page:
        return await self._page(await self.client.post(path, form=data, follow_redirects=follow))

    async def submit(
        self, path: str, data: dict[str, str], *, form_page: str | None = None, follow: bool = False
    ) -> Page:
        """GET ``form_page`` (default ``path``), then POST ``data`` with that page's token."""
        page = await self.get(form_page or path)
        return await self.post(path, {"csrf_token": page.csrf_token, **data}, follow=follow)

    async def _page(self, response: Any) -> Page:
        # Let the work a request handed to a background task finish, as it would before a
        # person could act on the answer.
        while self.app.background_tasks:
            await asyncio.gather(*self.app.background_tasks, return_exceptions=True)
        return Page(
            status=response.status_code,
            # <wbr> (where a long address may wrap) and <bdi> (its direction kept) are no
            # text: read the page as it reads.
            text=BREAKABLE.sub("", await response.get_data(as_text=True)),
            location=response.headers.get("Location"),
            headers=response.headers,
        )

    def cookie(self, name: str) -> str | None:
        jar = self.client.cookie_jar
        assert jar is not None
        for cookie in jar:
            if cookie.name == name:
                return cookie.value
        return None

    async def register(
        self,
        username: str = "alice",
        email: str = "alice@example.com",
        password: str = "correct horse battery",
        confirm: str | None = None,
        *,
        confirmed: bool = True,
    ) -> Page:
        """Register; with ``confirmed``, also follow the confirmation link the account's
        email carries (signing in needs a confirmed address)."""
        page = await self.submit(
            "/register",
            {
                "username": username,
                "email": email,
                "password": password,
                "confirm_password": password if confirm is None else confirm,
            },
        )
        if confirmed and page.status == 302:
            await self.confirm(email)
        return page

    async def confirm(self, email: str) -> Page:
        """Confirm ``email``'s account with the link its latest confirmation email carries
        (minted as the worker mints it)."""
        from shared.models import User
        from shared.tokens import Purpose
        from shared.validation import email_key
        from web.extensions import SERVICES_KEY

        context = self.app.extensions[SERVICES_KEY]
        async with context.reading() as session:
            user = await session.scalar(select(User).where(User.email_key == email_key(email)))
        assert user is not None, f"no account for {email}"
        token = context.tokens.dumps(
            Purpose.CONFIRM_EMAIL, {"uid": user.id, "gen": user.confirm_generation}
        )
        return await self.submit(f"/confirm/{token}", {})

    async def login(
        self,
        email: str = "alice@example.com",
        password: str = "correct horse battery",
        *,
        remember: bool = False,
        next: str | None = None,
    ) -> Page:
        data = {"email": email, "password": password}
        if remember:
            data["remember"] = "y"
        path = "/login" + (f"?next={quote(next)}" if next else "")
        return await self.submit(path, data)

    async def reauthenticate(
        self, next: str = "/account", password: str = "correct horse battery"
    ) -> Page:
        """Confirm it is you with the password, as the page a sensitive one sent you to
        asks (the answer redirects to ``next``, where you were headed)."""
        page = await self.get(f"/account/reauthenticate?next={quote(next)}")
        return await self.post(
            f"/account/reauthenticate/password?next={quote(next)}",
            {"csrf_token": page.csrf_token, "password": password},
        )

    async def logout(self) -> Page:
        page = await self.get("/")
        return await self.post("/logout", {"csrf_token": page.csrf_token})
