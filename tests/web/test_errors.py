"""Error pages: in the site's layout, with the right status, never a stack trace; an
unexpected error is reported to the ADMINS through the outbox."""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import Email
from shared.settings import Settings
from tests.web.browser import Browser
from web import create_app


async def test_not_found_page(browser: Browser) -> None:
    page = await browser.get("/no/such/page")
    assert page.status == 404
    assert "Page not found" in page.text
    assert 'class="topbar"' in page.text


async def test_oversized_post_gets_413(browser: Browser, settings: Settings) -> None:
    token = (await browser.get("/register")).csrf_token
    page = await browser.post(
        "/register", {"csrf_token": token, "username": "x" * (settings.MAX_CONTENT_LENGTH + 1)}
    )
    assert page.status == 413
    assert "larger than this site accepts" in page.text


async def test_unexpected_error_is_a_plain_500_and_alerts_admins_once(
    settings: Settings,
    clean_db: None,
    queue: ArqRedis,
    sessionmaker: SessionMaker,
    smtp: MailSink,
    run_worker: Any,
) -> None:
    app = create_app(settings.with_values(ADMINS="ops@example.com"))

    @app.get("/boom")
    async def boom() -> str:
        raise RuntimeError("secret internals")

    async with app.test_app():
        client = app.test_client()
        for _ in range(3):
            response = await client.get("/boom")
            body = await response.get_data(as_text=True)
            assert response.status_code == 500
            assert "Something went wrong" in body
            assert "Traceback" not in body and "secret internals" not in body

    async with sessionmaker() as session:
        alerts = list(await session.scalars(select(Email).where(Email.kind == "admin_alert")))
    assert len(alerts) == 1  # three identical errors, one alert
    await run_worker()
    (alert,) = smtp.messages
    assert alert.envelope_to == ["ops@example.com"]
    assert alert.message["Subject"] == "[Accounts] RuntimeError on GET /boom"
    assert "secret internals" in alert.part("text/plain")  # the admins do get the details
