"""Telling the ADMINS (a comma-separated setting) about errors, through the same outbox and queue.

At most one email per distinct error per 10 minutes, counted in Redis across processes, so an
error that repeats on every request does not bury the admins.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.jobs import AdminAlert, EmailKind
from shared.outbox import add_email
from shared.settings import Settings

QUIET_PERIOD = 600  # seconds between two alerts about the same error
MAX_DETAILS = 8000


async def alert_admins(
    session: AsyncSession,
    redis: Redis | None,
    settings: Settings,
    *,
    key: str,
    summary: str,
    details: str,
) -> bool:
    """Queue an alert to every ADMINS address unless one went out for ``key`` recently."""
    if not settings.ADMINS:
        return False
    if redis is not None:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        try:
            key = f"{settings.REDIS_KEY_PREFIX}admin-alert:{digest}"
            first = await redis.set(key, "1", nx=True, ex=QUIET_PERIOD)
        except (RedisError, OSError):
            first = True  # better a duplicate alert than none
        if not first:
            return False
    context = AdminAlert(summary=summary[:200], details=details[-MAX_DETAILS:])
    for admin in settings.ADMINS:
        await add_email(session, EmailKind.ADMIN_ALERT, admin, context)
    return True
