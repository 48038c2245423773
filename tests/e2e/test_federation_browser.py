"""Signing in with other identity providers in real Chromium, on a live stack: oidc-provider
(npm, a certified OpenID Provider) with its own login and consent pages, and this service's
own identity provider as a second issuer; and an answer from one provider delivered to the
other's callback (a mix-up), refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import async_playwright, expect

from devstack.servers import free_port
from shared.settings import Settings
from tests.e2e.test_identity_provider import registered
from tests.federation_peer import outside_provider, sign_in_there
from tests.support import CHROMIUM, Stack, needs_chromium, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("clean_db"),
    needs_chromium,
]


async def test_continue_with_two_providers_in_a_browser(
    settings: Settings, queue: Any, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with outside_provider([f"{base}/login/federated/op/callback"]) as op:
        self_id, self_secret = registered(
            settings, "--name", "This service", "--first-party",
            "--redirect-uri", f"{base}/login/federated/self/callback",
        )  # fmt: skip
        providers = [
            op.config(),
            {"id": "self", "name": "Our own", "issuer": base, "client_id": self_id,
             "client_secret": self_secret},
        ]  # fmt: skip
        stack = Stack(settings, tmp_path, port=port, FEDERATION_PROVIDERS=json.dumps(providers))
        try:
            await wait_for(stack.up, timeout=60, every=0.2)
            async with async_playwright() as playwright:
                chromium = await playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True,
                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
                )  # fmt: skip
                page = await (await chromium.new_context(base_url=base)).new_page()
                # Sign up through oidc-provider's own pages.
                await page.goto("/login")
                await page.get_by_role("link", name="Continue with Test IdP").click()
                await page.locator("input[name=login]").fill("jo@example.com")
                await page.locator("input[name=password]").fill("anything")
                await page.get_by_role("button", name="Sign-in").click()
                await page.get_by_role("button", name="Continue").click()
                await expect(page.get_by_role("heading", name="Choose a username")).to_be_visible()
                await page.get_by_label("Username").fill("jo")
                await page.get_by_role("button", name="Create my account").click()
                await expect(page.get_by_text("Welcome! Your account is ready")).to_be_visible()
                # Connect the second issuer: this service's own provider.
                await page.goto("/account/connected")
                await page.get_by_role("link", name="Connect Our own").click()
                await expect(page.get_by_text("Our own account is connected")).to_be_visible()
                rows = page.locator("table.sessions tbody tr")
                await expect(rows).to_have_count(2)
                # Sign out, and in again with a click: the provider remembers the person and
                # the consent, and the identity is linked.
                await page.get_by_role("button", name="Sign out", exact=True).click()
                await page.goto("/login")
                await page.get_by_role("link", name="Continue with Test IdP").click()
                await expect(
                    page.get_by_role("button", name="Sign out", exact=True)
                ).to_be_visible()
                await chromium.close()

            # A mix-up: an answer from the outside provider, delivered to our own provider's
            # callback in the browser that started it, is refused.
            import httpx

            async with httpx.AsyncClient(base_url=base, follow_redirects=False) as browser:
                leaving = await browser.get("/login/federated/op")
                back = await sign_in_there(
                    leaving.headers["location"], "kim@example.com",
                    f"{base}/login/federated/op/callback",
                )  # fmt: skip
                swapped = urlsplit(back)._replace(path="/login/federated/self/callback").geturl()
                answer = await browser.get(swapped)
                assert answer.status_code == 400 and "another provider" in answer.text
        finally:
            stack.stop()
