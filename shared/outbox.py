"""Writing to the email outbox, and waking the worker after commit.

Service functions call :func:`add_email` inside the caller's transaction. The caller commits,
then calls :func:`enqueue_committed` with the same session: only committed rows are announced
to the worker, and a Redis failure there loses nothing, because the sweeper re-enqueues every
pending row whose job never arrived.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, cast

from redis.exceptions import RedisError
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from shared import i18n
from shared.db import SessionMaker, insert_bound
from shared.jobs import (
    EMAIL_CONTEXTS,
    PRIORITY_KINDS,
    EmailContext,
    EmailKind,
    enqueue_deliver_logout,
    enqueue_deliver_webhook,
    enqueue_send_emails,
)
from shared.models import Email, User
from shared.validation import email_key

EMAILS = cast(Table, Email.__table__)
_ADD_EMAIL = insert_bound(
    EMAILS, "kind", "recipient", "recipient_key", "context", "user_id", "locale"
).returning(EMAILS.c.id)
KINDS = {model: kind for kind, model in EMAIL_CONTEXTS.items()}  # context type -> email kind

if TYPE_CHECKING:
    from arq.connections import ArqRedis

log = logging.getLogger(__name__)

_UNANNOUNCED = "outbox.unannounced_ids"
_UNANNOUNCED_WEBHOOKS = "outbox.unannounced_webhook_ids"
_UNANNOUNCED_LOGOUTS = "outbox.unannounced_logout_ids"


async def add_email(
    session: AsyncSession,
    kind: EmailKind,
    recipient: str,
    context: EmailContext,
    *,
    user_id: int | None = None,
) -> int:
    """Add an outbox row to the session's transaction; returns its id. One INSERT, not an ORM
    object: this runs for every email, and nothing reads the row back in the same unit."""
    (email_id,) = await add_emails(session, kind, [(recipient, context, user_id)])
    return email_id


async def add_emails(
    session: AsyncSession,
    kind: EmailKind,
    emails: Sequence[tuple[str, EmailContext, int | None]],
) -> list[int]:
    """Add an outbox row of ``kind`` per (recipient, context, user id) to the session's
    transaction, all in one INSERT; returns their ids."""
    if not emails:
        return []
    expected = EMAIL_CONTEXTS[kind]
    rows = []
    for recipient, context, user_id in emails:
        if type(context) is not expected:
            raise TypeError(f"{kind} emails take {expected.__name__}, not {type(context).__name__}")
        rows.append(
            {
                "kind": kind.value,
                "recipient": recipient,
                "recipient_key": email_key(recipient),
                "context": context.model_dump(mode="json"),
                "user_id": user_id,
                # The cause's language (a request's, or the default where none speaks).
                "locale": i18n.current(),
            }
        )
    # SQLAlchemy sends the rows as one multi-row INSERT ... RETURNING, ids in their order.
    email_ids = list(await session.scalars(_ADD_EMAIL, rows))
    announce(session, email_ids, priority=kind in PRIORITY_KINDS)
    return email_ids


async def email_user(session: AsyncSession, user: User, context: EmailContext) -> int:
    """Queue the email ``context`` describes (its type names the kind) to ``user``."""
    return await add_email(session, KINDS[type(context)], user.email, context, user_id=user.id)


def announce(session: AsyncSession, email_ids: list[int], *, priority: bool = False) -> None:
    """Enqueue these outbox rows once the session's transaction has committed."""
    session.info.setdefault(_UNANNOUNCED, []).extend((i, priority) for i in email_ids)


def announce_webhooks(session: AsyncSession, delivery_ids: list[int]) -> None:
    """Enqueue these webhook delivery rows once the session's transaction has committed."""
    session.info.setdefault(_UNANNOUNCED_WEBHOOKS, []).extend(delivery_ids)


def announce_logouts(session: AsyncSession, delivery_ids: list[int]) -> None:
    """Enqueue these back-channel logout deliveries once the transaction has committed."""
    session.info.setdefault(_UNANNOUNCED_LOGOUTS, []).extend(delivery_ids)


def take_unannounced(session: AsyncSession) -> list[tuple[int, bool]]:
    """(id, priority) of the outbox rows added through this session since the last call
    (the webhook and logout deliveries' announcements go with them)."""
    session.info.pop(_UNANNOUNCED_WEBHOOKS, None)
    session.info.pop(_UNANNOUNCED_LOGOUTS, None)
    rows: list[tuple[int, bool]] = session.info.pop(_UNANNOUNCED, [])
    return rows


async def enqueue_committed(
    session: AsyncSession, redis: ArqRedis | None, *, queue_name: str
) -> list[str]:
    """Enqueue delivery of the rows this session added; call only after a successful commit.
    The emails go in one call, however many the transaction added (a group commit's many).

    Never raises for Redis trouble: the rows are committed, so the sweeper will find them.
    """
    webhook_ids: list[int] = session.info.get(_UNANNOUNCED_WEBHOOKS, [])
    logout_ids: list[int] = session.info.get(_UNANNOUNCED_LOGOUTS, [])
    rows = take_unannounced(session)
    if redis is None:
        return []
    jobs: list[tuple[str, Callable[[], Awaitable[list[str]]]]] = []
    if rows:
        what = f"email {rows[0][0]}" if len(rows) == 1 else f"{len(rows)} emails"
        jobs.append(
            (what, functools.partial(enqueue_send_emails, redis, rows, queue_name=queue_name))
        )
    jobs += [
        (f"webhook delivery {delivery_id}", functools.partial(
            _enqueue_webhook, redis, delivery_id, queue_name=queue_name))
        for delivery_id in webhook_ids
    ]  # fmt: skip
    jobs += [
        (f"logout delivery {delivery_id}", functools.partial(
            _enqueue_logout, redis, delivery_id, queue_name=queue_name))
        for delivery_id in logout_ids
    ]  # fmt: skip
    job_ids: list[str] = []
    for what, enqueue in jobs:
        try:
            job_ids += await enqueue()
        except (RedisError, OSError) as error:
            log.warning(
                "could not enqueue %s (%s); the outbox sweeper will take over",
                what,
                type(error).__name__,
            )
    return job_ids


async def _enqueue_logout(redis: ArqRedis, delivery_id: int, *, queue_name: str) -> list[str]:
    job_id = await enqueue_deliver_logout(redis, delivery_id, queue_name=queue_name)
    return [] if job_id is None else [job_id]


async def _enqueue_webhook(redis: ArqRedis, delivery_id: int, *, queue_name: str) -> list[str]:
    job_id = await enqueue_deliver_webhook(redis, delivery_id, queue_name=queue_name)
    return [] if job_id is None else [job_id]


@asynccontextmanager
async def transaction(
    sessionmaker: SessionMaker, redis: ArqRedis | None, *, queue_name: str
) -> AsyncIterator[AsyncSession]:
    """One unit of work: a session whose transaction commits when the block ends without an
    error, after which the outbox rows it added are enqueued. On error nothing is committed
    and nothing is announced."""
    async with sessionmaker() as session:
        try:
            async with session.begin():
                yield session
        except BaseException:
            take_unannounced(session)
            raise
        await enqueue_committed(session, redis, queue_name=queue_name)
