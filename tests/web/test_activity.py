"""The activity page and its API: the owner's security events in words, paginated, in the
export too."""

from __future__ import annotations

import json
from datetime import timedelta

from quart import Quart
from sqlalchemy import update

from shared.db import SessionMaker
from shared.models import SecurityEvent
from tests.web.browser import Browser

PASSWORD = "correct horse battery"


async def test_the_activity_page_tells_what_happened_in_words(
    browser: Browser, sessionmaker: SessionMaker
) -> None:
    await browser.register()
    await browser.login("alice@example.com", "not my password")
    await browser.login()
    new = "new staple battery horse"
    await browser.submit(
        "/account/password",
        {"current_password": PASSWORD, "password": new, "confirm_password": new},
    )
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(SecurityEvent)
            .where(SecurityEvent.kind == "user.registered")
            .values(created_at=SecurityEvent.created_at - timedelta(hours=2))
        )
    page = await browser.get("/account/activity")
    assert page.status == 200
    text = page.text
    assert "Password changed from An unknown browser, just now" in text
    assert "1 failed sign-in from 1 address, the last just now" in text
    assert "Account created from An unknown browser, 2 hours ago" in text
    assert text.index("Password changed") < text.index("Account created")  # newest first


async def test_the_api_and_the_export_include_the_events(app: Quart) -> None:
    await Browser(app).register()
    api = app.test_client()
    await api.post("/api/v1/login", json={"email": "alice@example.com", "password": PASSWORD})
    activity = await (await api.get("/api/v1/account/activity")).get_json()
    assert [e["kind"] for e in activity["events"]] == [
        "user.login_succeeded",
        "user.confirmed",
        "user.registered",
    ]
    assert activity["events"][0]["description"].startswith("Signed in from ")
    assert (activity["page"], activity["pages"]) == (1, 1)
    exported = await (await api.get("/api/v1/account/export")).get_json()
    assert [e["kind"] for e in exported["events"]][-1] == "user.login_succeeded"
    assert "method" in json.dumps(exported["events"][-1]["details"])
