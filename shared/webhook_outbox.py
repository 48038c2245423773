"""Writing to the webhook outbox: the deliveries an event owes to subscribed endpoints.

:func:`fan_out` runs inside the event's transaction (``shared.services.events.record``
calls it), so a delivery exists exactly when its event does; the rows are announced to the
worker after the commit, as emails are (see :mod:`shared.outbox`).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ARRAY, Insert, String, Table, Text, bindparam, insert, literal, select
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


def fan_out_with(event: Insert) -> Insert:
    """The statement :func:`fan_out` runs, built once per caller (building one costs more than
    running it): owe an event to every endpoint subscribed to its type, one INSERT ...
    SELECT (nothing is inserted when nobody subscribes), with ``event`` (the event's own
    INSERT, its values bound parameters) in the same statement as a data-modifying WITH
    clause, so an event and its deliveries cost one round trip."""
    subscribed = select(
        WebhookEndpoint.id,
        bindparam("webhook_message_id", type_=String),
        bindparam("webhook_event_type", type_=String),
        bindparam("webhook_body", type_=Text),
        literal("pending"),
        literal(0),
    ).where(WebhookEndpoint.event_types.overlap(bindparam("webhook_types", type_=ARRAY(String))))
    # Every column given: the column defaults SQLAlchemy would otherwise add as parameters
    # are lost when another INSERT rides along in a WITH clause.
    columns = ["endpoint_id", "message_id", "event_type", "body", "status", "attempts"]
    # The table, not the mapped class: the ORM would read the parameters as rows to insert.
    deliveries = cast(Table, WebhookDelivery.__table__)
    return (
        insert(deliveries)
        .from_select(columns, subscribed, include_defaults=False)
        .returning(deliveries.c.id)
        .add_cte(event.cte("event"))
    )


async def fan_out(
    session: AsyncSession,
    statement: Insert,
    event_type: str,
    at: datetime,
    data: dict[str, Any],
    event_values: dict[str, Any],
) -> str:
    """Add an event (``event_values``: its INSERT's parameters) and the deliveries it owes to
    the caller's transaction with ``statement``, made by :func:`fan_out_with`. Returns the
    message id."""
    message_id = new_message_id()
    parameters = {
        **event_values,
        "webhook_message_id": message_id,
        "webhook_event_type": event_type,
        "webhook_body": message_body(message_id, event_type, at, data),
        "webhook_types": [event_type, ALL_TYPES],
    }
    rows = await session.execute(statement, parameters)
    announce_webhooks(session, list(rows.scalars()))
    return message_id
