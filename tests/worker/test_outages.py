"""PostgreSQL going away under the worker: its sweeps say so once and once when it is back,
with no traceback at every sweep in between; the web's counterpart is tests/web/test_outages."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy.engine import make_url

from shared.settings import Settings
from tests.relay import Relay
from worker.bootstrap import worker_options
from worker.context import OUTAGES
from worker.mail.delivery import purge, sweep_outbox

pytestmark = pytest.mark.usefixtures("clean_db")


async def test_sweeps_during_an_outage_are_two_lines(
    settings: Settings, queue: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_url(settings.DATABASE_URL)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    await relay.start()
    relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    ctx: dict[str, Any] = {"redis": queue}
    options = worker_options(settings.with_values(DATABASE_URL=relayed))
    await options["on_startup"](ctx)
    try:
        assert await sweep_outbox(ctx) == 0
        await relay.cut()
        caplog.clear()
        caplog.set_level(logging.INFO)
        for _ in range(3):
            assert await sweep_outbox(ctx) is None
        assert await purge(ctx) is None
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(said) == 1 and said[0].startswith("PostgreSQL is unavailable"), said
        assert "emails, webhooks and back-channel logouts wait in the outbox" in said[0]
        assert not [r for r in caplog.records if r.exc_info]

        await relay.mend()
        caplog.clear()
        for _ in range(10):  # the pool meets its dead connections first
            if await sweep_outbox(ctx) is not None:
                break
        back = [r.getMessage() for r in caplog.records if "is back" in r.getMessage()]
        assert len(back) == 1 and back[0].startswith("PostgreSQL is back after")
        assert OUTAGES.since is None
    finally:
        await options["on_shutdown"](ctx)
        await relay.cut()
