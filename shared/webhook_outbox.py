"""Writing to the webhook outbox: what a delivery an event owes a subscribed endpoint holds.

The deliveries are written by the event's own statement, in its transaction
(:func:`shared.services.events.record_many`), so a delivery exists exactly when its event
does; the rows are announced to the worker after the commit, as emails are (see
:mod:`shared.outbox`).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

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
