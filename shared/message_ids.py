"""An outbox message's Message-ID, written (by the worker, when it sends) and read back (from
a provider's event about it, by the bounces use case) in this one module."""

from __future__ import annotations

import re
from datetime import datetime

_OUTBOX_MESSAGE_ID = re.compile(r"outbox\.(\d{1,18})\.\d+@")


def message_id_for(email_id: int, created_at: datetime, sender: str) -> str:
    """Message-ID derived from the outbox row: a duplicate delivery is traceable to its row,
    and the creation time keeps ids unique across databases that reuse row numbers."""
    domain = sender.rpartition("@")[2].rstrip(">").strip() or "localhost"
    return f"<outbox.{email_id}.{int(created_at.timestamp())}@{domain}>"


def email_id_in(message_id: str) -> int | None:
    """The outbox row a Message-ID names, if it is one of ours."""
    match = _OUTBOX_MESSAGE_ID.search(message_id)
    return int(match.group(1)) if match else None
