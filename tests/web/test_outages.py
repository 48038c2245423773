"""PostgreSQL going away under a signed-in browser: the designed 503 page for every page
(the layout itself must not need the database), one log line when it starts and one when it
is back, no tracebacks, no admin alert; then everything works again."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.connections import ArqRedis
from quart import Quart
from sqlalchemy.engine import make_url

from shared.settings import Settings
from tests.relay import Relay
from tests.web.browser import Browser


@pytest.fixture
async def relay(base_settings: Settings) -> AsyncIterator[Relay]:
    url = make_url(base_settings.DATABASE_URL)
    running = Relay(url.host or "127.0.0.1", url.port or 5432)
    await running.start()
    yield running
    await running.cut()


@pytest.fixture
def settings(base_settings: Settings, relay: Relay) -> Settings:
    """This module's apps reach PostgreSQL through the relay, which a test may cut."""
    url = make_url(base_settings.DATABASE_URL).set(host="127.0.0.1", port=relay.port)
    return base_settings.with_values(DATABASE_URL=url.render_as_string(hide_password=False))


async def test_a_database_outage_is_a_503_page_and_two_log_lines(
    app: Quart, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    browser = Browser(app)
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


async def test_every_connection_busy_is_a_wait_then_a_503(
    settings: Settings, clean_db: None, queue: ArqRedis
) -> None:
    from web import create_app
    from web.extensions import SERVICES_KEY

    app = create_app(settings.with_values(DATABASE_CONNECTIONS=4, DATABASE_POOL_TIMEOUT=0.3))
    async with app.test_app():
        engine = app.extensions[SERVICES_KEY].engine
        held = [await engine.connect() for _ in range(4)]  # the process's whole budget
        try:
            response = await app.test_client().post(
                "/api/v1/login", json={"email": "a@example.com", "password": "whatever1"}
            )
            assert response.status_code == 503
            assert response.headers["Retry-After"]
        finally:
            for connection in held:
                await connection.close()
        response = await app.test_client().post(
            "/api/v1/login", json={"email": "a@example.com", "password": "whatever1"}
        )
        assert response.status_code == 401


async def test_a_server_out_of_connections_is_a_503(
    settings: Settings, services: Any, clean_db: None, queue: ArqRedis
) -> None:
    """PostgreSQL refusing a connection ("too many connections": SQLSTATE 53300) is an
    outage to answer 503, not a bug to answer 500."""
    import asyncpg

    from web import create_app

    admin = await asyncpg.connect(services.admin_dsn)
    try:
        await admin.execute("DROP ROLE IF EXISTS accounts_no_room")
        await admin.execute("CREATE ROLE accounts_no_room LOGIN CONNECTION LIMIT 0")
        url = make_url(settings.DATABASE_URL).set(username="accounts_no_room")
        app = create_app(
            settings.with_values(DATABASE_URL=url.render_as_string(hide_password=False))
        )
        async with app.test_app():
            response = await app.test_client().post(
                "/api/v1/login", json={"email": "a@example.com", "password": "whatever1"}
            )
            assert response.status_code == 503
            page = await app.test_client().get("/account/sessions")
            assert page.status_code in (302, 503)
    finally:
        await admin.execute("DROP ROLE IF EXISTS accounts_no_room")
        await admin.close()


async def test_a_budget_larger_than_the_server_is_said_at_start_up(
    services_ctx: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from shared.services.operations import check_connection_budget, connection_budget

    budget = await connection_budget(services_ctx)
    assert budget.max_connections >= 1 and budget.in_use >= 1
    logger = logging.getLogger("tests.budget")
    with caplog.at_level(logging.WARNING, "tests.budget"):
        await check_connection_budget(services_ctx, 2, logger)
        assert caplog.records == []  # 2 x 10 fits
        await check_connection_budget(services_ctx, budget.max_connections, logger)
    (said,) = caplog.records
    assert "lower DATABASE_CONNECTIONS or WEB_WORKERS" in said.getMessage()
