"""Every page at phone width (390 px) and desktop width (1280 px) in real Chromium: nothing
is wider than the window (no sideways scrolling), the icon is served, and the screenshots
land in artifacts/screens/layout/."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright, expect
from sqlalchemy import update

from shared.db import SessionMaker
from shared.models import User
from shared.passwords import hash_password
from shared.settings import Settings
from tests.support import ROOT, Stack, add_accounts, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENS = ROOT / "artifacts" / "screens" / "layout"
PASSWORD = "correct horse battery"
# A long address: the kind that spilled out of its card.
EMAIL = "first.middle.lastname@subdomain.example-organisation.co.uk"
PAGES = [
    "/", "/login", "/register", "/reset_password", "/login/code",
    "/account", "/account/sessions", "/account/apps", "/account/connected",
    "/account/activity", "/account/passkeys", "/account/two-factor", "/account/email",
    "/account/password", "/account/delete",
]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("clean_db"),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
        reason="Debian's chromium is not installed (.ci/run installs it)",
    ),
]


async def test_no_page_is_wider_than_a_phone(
    settings: Settings, sessionmaker: SessionMaker, queue: Any, tmp_path: Path
) -> None:
    (user_id,) = await add_accounts(sessionmaker, [EMAIL], await hash_password(PASSWORD))
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(User).where(User.id == user_id).values(confirmed_at=datetime.now(UTC))
        )
    SCREENS.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings, tmp_path)
    too_wide: list[str] = []
    try:
        await wait_for(stack.up, timeout=60, every=0.2)
        async with async_playwright() as playwright:
            chromium = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )  # fmt: skip
            for width, height in ((390, 844), (1280, 900)):
                context = await chromium.new_context(
                    base_url=stack.base_url, viewport={"width": width, "height": height}
                )
                page = await context.new_page()
                icon = await page.request.get("/favicon.ico")
                assert icon.ok and "svg" in icon.headers["content-type"]
                await page.goto("/login")
                await page.get_by_label("Email").fill(EMAIL)
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Sign in", exact=True).click()
                await expect(
                    page.get_by_role("button", name="Sign out", exact=True)
                ).to_be_visible()
                for path in PAGES:
                    await page.goto(path)
                    wide = await page.evaluate("document.documentElement.scrollWidth")
                    if wide > width:
                        too_wide.append(f"{path} at {width} px: {wide} px wide")
                    name = path.strip("/").replace("/", "-") or "home"
                    await page.screenshot(path=str(SCREENS / f"{name}-{width}.png"), full_page=True)
                await context.close()
            await chromium.close()
    finally:
        stack.stop()
    assert too_wide == []
