"""Writing to the webhook outbox: the deliveries an event owes to subscribed endpoints.

:func:`fan_out` runs inside the event's transaction (``shared.services.events.record``
calls it), so a delivery exists exactly when its event does; the rows are announced to the
worker after the commit, as emails are (see :mod:`shared.outbox`).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Insert, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import WebhookDelivery, WebhookEndpoint
from shared.outbox import announce_webhooks

ALL_TYPES = "*"  # an endpoint subscribed to every event type


def message_body(message_id: str, event_type: str, at: datetime, data: dict[str, Any]) -> str:
    """The JSON a receiver gets, in the specification's recommended shape (``type``,
    ``timestamp``, ``data``) plus the ``id`` it may deduplicate on (also the webhook-id)."""
    payload = {
        "id": message_id,
        "type": event_type,
        "timestamp": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def new_message_id() -> str:
    """A stable, unguessable id per event: the same on every attempt and every endpoint."""
    return "msg_" + secrets.token_urlsafe(18)


async def fan_out(
    session: AsyncSession,
    event_type: str,
    at: datetime,
    data: dict[str, Any],
    *,
    with_statement: Insert | None = None,
) -> str:
    """Owe the event to every endpoint subscribed to its type, in the caller's transaction:
    one INSERT ... SELECT (nothing is inserted when nobody subscribes). ``with_statement``
    (the event's own INSERT) runs in the same statement, as a data-modifying WITH clause,
    so an event and its deliveries cost one round trip. Returns the message id."""
    message_id = new_message_id()
    body = message_body(message_id, event_type, at, data)
    subscribed = select(
        WebhookEndpoint.id,
        literal(message_id),
        literal(event_type),
        literal(body),
        literal("pending"),
        literal(0),
    ).where(WebhookEndpoint.event_types.overlap([event_type, ALL_TYPES]))
    # Every column given: the column defaults SQLAlchemy would otherwise add as parameters
    # are lost when another INSERT rides along in a WITH clause.
    columns = ["endpoint_id", "message_id", "event_type", "body", "status", "attempts"]
    statement = (
        insert(WebhookDelivery)
        .from_select(columns, subscribed, include_defaults=False)
        .returning(WebhookDelivery.id)
    )
    if with_statement is not None:
        statement = statement.add_cte(with_statement.cte("event"))
    rows = await session.execute(statement)
    announce_webhooks(session, list(rows.scalars()))
    return message_id
