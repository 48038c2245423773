"""Home page and the health endpoints."""

from __future__ import annotations

import asyncio
import logging
import time

from quart import Blueprint, render_template, request
from quart.typing import ResponseReturnValue
from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.orm import joinedload

from shared.jobs import heartbeat_key
from shared.models import TextPost
from shared.services.outbox_admin import outbox_stats
from web.extensions import resources

log = logging.getLogger(__name__)
blueprint = Blueprint("main", __name__)

TEXTS_PER_PAGE = 10
READY_TIMEOUT = 2.0  # seconds: a readiness probe must answer quickly, even when a backend hangs


@blueprint.get("/")
async def home() -> ResponseReturnValue:
    page = max(1, request.args.get("page", 1, type=int) or 1)
    async with resources().sessionmaker() as session:
        total = await session.scalar(select(func.count()).select_from(TextPost)) or 0
        texts = list(
            await session.scalars(
                select(TextPost)
                .options(joinedload(TextPost.author))
                .order_by(TextPost.created_at.desc(), TextPost.id.desc())
                .limit(TEXTS_PER_PAGE)
                .offset((page - 1) * TEXTS_PER_PAGE)
            )
        )
    pages = max(1, -(-total // TEXTS_PER_PAGE))
    return await render_template("main/home.html", texts=texts, page=page, pages=pages)


@blueprint.get("/healthz")
async def healthz() -> ResponseReturnValue:
    """Liveness: the process answers. Deliberately checks nothing else."""
    return {"status": "ok"}


@blueprint.get("/metrics")
async def metrics() -> ResponseReturnValue:
    """Prometheus text format: the outbox's backlog and the worker's pulse."""
    res = resources()
    async with res.sessionmaker() as session:
        stats = await outbox_stats(session)
    try:
        beat = await asyncio.wait_for(
            res.queue.get(heartbeat_key(res.settings.QUEUE_NAME)), READY_TIMEOUT
        )
        heartbeat_age = max(0.0, time.time() - float(beat)) if beat else -1.0
    except (RedisError, OSError, TimeoutError, ValueError):
        heartbeat_age = -1.0
    lines = [
        "# HELP accounts_outbox_emails Outbox emails waiting (pending) or given up (failed).",
        "# TYPE accounts_outbox_emails gauge",
        f'accounts_outbox_emails{{status="pending"}} {stats.pending}',
        f'accounts_outbox_emails{{status="failed"}} {stats.failed}',
        "# HELP accounts_outbox_oldest_pending_seconds Age of the oldest pending email.",
        "# TYPE accounts_outbox_oldest_pending_seconds gauge",
        f"accounts_outbox_oldest_pending_seconds {stats.oldest_pending_age:.3f}",
        "# HELP accounts_worker_heartbeat_age_seconds Seconds since a worker last swept the"
        " outbox; -1 if unknown.",
        "# TYPE accounts_worker_heartbeat_age_seconds gauge",
        f"accounts_worker_heartbeat_age_seconds {heartbeat_age:.3f}",
    ]
    return "\n".join(lines) + "\n", 200, {"Content-Type": "text/plain; version=0.0.4"}


@blueprint.get("/readyz")
async def readyz() -> ResponseReturnValue:
    """Readiness: PostgreSQL and Redis both answer; 503 naming what is down otherwise."""
    res = resources()

    async def database() -> None:
        async with res.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def redis() -> None:
        await res.queue.ping()

    checks = {"database": database, "redis": redis}
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
