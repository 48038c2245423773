"""Operations: liveness and readiness for orchestrators."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from quart import Blueprint
from quart.typing import ResponseReturnValue

from web.extensions import services

log = logging.getLogger(__name__)
blueprint = Blueprint("ops", __name__)

READY_TIMEOUT = 2.0  # seconds: a readiness probe must answer quickly, even when a backend hangs


@blueprint.get("/healthz")
async def healthz() -> ResponseReturnValue:
    """Liveness: the process answers. Deliberately checks nothing else."""
    return {"status": "ok"}


@blueprint.get("/readyz")
async def readyz() -> ResponseReturnValue:
    """Readiness: PostgreSQL and Redis both answer; 503 naming what is down otherwise."""
    context = services()
    checks: dict[str, Callable[[], Awaitable[object]]] = {
        "database": context.ping_database,
        "redis": context.redis.ping,
    }
    results = await asyncio.gather(
        *(asyncio.wait_for(check(), READY_TIMEOUT) for check in checks.values()),
        return_exceptions=True,
    )
    report: dict[str, str] = {}
    for name, result in zip(checks, results, strict=True):
        if isinstance(result, BaseException):
            report[name] = f"down: {type(result).__name__}"
            log.warning("readiness: %s is down (%r)", name, result)
        else:
            report[name] = "ok"
    ready = all(value == "ok" for value in report.values())
    body = {"status": "ready" if ready else "unavailable", "checks": report}
    return body, 200 if ready else 503
