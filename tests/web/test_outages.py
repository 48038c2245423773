"""PostgreSQL going away under a signed-in browser: the designed 503 page for every page
(the layout itself must not need the database), one log line when it starts and one when it
is back, no tracebacks, no admin alert; then everything works again."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from arq.connections import ArqRedis
from quart import Quart
from sqlalchemy.engine import make_url

from shared.settings import Settings
from tests.relay import Relay
from tests.support import RUNNING_APPS
from tests.web.browser import Browser


@pytest.fixture
async def relay(settings: Settings) -> AsyncIterator[Relay]:
    url = make_url(settings.DATABASE_URL)
    running = Relay(url.host or "127.0.0.1", url.port or 5432)
    await running.start()
    yield running
    await running.cut()


@pytest.fixture
async def relayed_app(
    settings: Settings, relay: Relay, clean_db: None, queue: ArqRedis
) -> AsyncIterator[Quart]:
    from web import create_app

    url = make_url(settings.DATABASE_URL).set(host="127.0.0.1", port=relay.port)
    app = create_app(settings.with_values(DATABASE_URL=url.render_as_string(hide_password=False)))
    async with app.test_app():
        RUNNING_APPS.append(app)
        try:
            yield app
        finally:
            RUNNING_APPS.remove(app)


async def test_a_database_outage_is_a_503_page_and_two_log_lines(
    relayed_app: Quart, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    browser = Browser(relayed_app)
    await browser.register()
    await browser.login()
    assert (await browser.get("/account")).status == 200

    await relay.cut()
    caplog.clear()
    caplog.set_level(logging.INFO)
    for path in ["/account", "/", "/login", "/account/sessions", "/account"]:
        page = await browser.get(path)
        assert page.status == 503, (path, page.status)
        assert "Temporarily unavailable" in page.text
        assert "Internal Server Error" not in page.text
    api = await browser.client.get("/api/v1/me")
    assert api.status_code == 503
    assert api.headers["Retry-After"]
    noted = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noted) == 1, [r.getMessage() for r in noted]
    assert "PostgreSQL" in noted[0].getMessage() or "database" in noted[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]

    await relay.mend()
    caplog.clear()
    page = await browser.get("/account")
    for _ in range(20):  # the pool drops the dead connections as it meets them
        if page.status == 200:
            break
        page = await browser.get("/account")
    assert page.status == 200
    back = [r.getMessage() for r in caplog.records if "back" in r.getMessage()]
    assert len(back) == 1, back
    assert not [r for r in caplog.records if r.exc_info]
    assert urlsplit(str(relay.port))  # the relay served the whole test
