"""/healthz answers while the process is up; /readyz follows PostgreSQL and Redis."""

from __future__ import annotations

import logging

import pytest
from quart.typing import TestClientProtocol as Client

from devstack.mailsink import free_port
from devstack.servers import EmbeddedRedis
from shared.settings import Settings
from web import create_app


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def test_readyz_when_everything_answers(client: Client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert await response.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok"},
    }


async def test_readyz_follows_a_real_redis_through_stop_and_restart(settings: Settings) -> None:
    redis = EmbeddedRedis(free_port())
    redis.start()
    app = create_app(settings.with_values(**{"REDIS_URL": redis.url}))
    try:
        async with app.test_app():
            client = app.test_client()
            assert (await client.get("/readyz")).status_code == 200

            redis.stop()
            response = await client.get("/readyz")
            assert response.status_code == 503
            body = await response.get_json()
            assert body["status"] == "unavailable"
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["redis"].startswith("down")
            # Liveness is not readiness: the process itself is fine.
            assert (await client.get("/healthz")).status_code == 200

            redis.start()
            assert (await client.get("/readyz")).status_code == 200
    finally:
        redis.stop()


async def test_readyz_names_the_database_when_it_is_down(settings: Settings) -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app(settings.with_values(**{"DATABASE_URL": dead}))
    async with app.test_app():
        response = await app.test_client().get("/readyz")
    assert response.status_code == 503
    body = await response.get_json()
    assert body["checks"]["database"].startswith("down")
    assert body["checks"]["redis"] == "ok"


async def test_pages_answer_503_while_the_database_is_down(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app(settings.with_values(DATABASE_URL=dead))
    with caplog.at_level(logging.WARNING):
        async with app.test_app():
            client = app.test_client()
            page = await client.get("/")
            assert page.status_code == 503
            assert page.headers["Retry-After"] == "5"
            assert "Temporarily unavailable" in await page.get_data(as_text=True)
            api = await client.post(
                "/api/v1/login", json={"email": "a@example.com", "password": "whatever1"}
            )
            assert api.status_code == 503
            assert api.headers["Content-Type"] == "application/problem+json"
    assert "PostgreSQL cannot be reached at start-up" in caplog.text  # said once, up front
    unavailable = [r for r in caplog.records if "is unavailable" in r.getMessage()]
    assert len(unavailable) == 1  # one line for the outage, not one per request ...
    assert unavailable[0].getMessage().startswith("PostgreSQL is unavailable")
    assert all(record.exc_info is None for record in unavailable)  # ... and no traceback
    assert "Traceback" not in caplog.text
