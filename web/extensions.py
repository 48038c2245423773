"""Extensions created bare here and bound to the app in :func:`web.create_app`, plus the
per-process resources (database engine, queue pool) made in ``before_serving``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from arq.connections import ArqRedis
from quart import current_app
from quart_auth import QuartAuth
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.db import SessionMaker
from shared.outbox import transaction as outbox_transaction
from shared.settings import Settings
from shared.tokens import Tokens

auth_manager = QuartAuth()  # user_class is set in create_app (web.auth imports this module)

RESOURCES_KEY = "accounts.resources"


@dataclass(slots=True)
class Resources:
    """What a request handler needs from its process, created once per process."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: SessionMaker
    queue: ArqRedis
    tokens: Tokens


def resources() -> Resources:
    value = current_app.extensions[RESOURCES_KEY]
    assert isinstance(value, Resources)
    return value


def tokens() -> Tokens:
    return resources().tokens


@asynccontextmanager
async def transaction() -> AsyncIterator[AsyncSession]:
    """The request's unit of work: commit at the end, then enqueue the emails it caused."""
    res = resources()
    async with outbox_transaction(
        res.sessionmaker, res.queue, queue_name=res.settings.QUEUE_NAME
    ) as session:
        yield session
