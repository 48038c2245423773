"""A provider's events about what it delivered: Mailgun's signed event webhooks, verified as
Mailgun documents them and recorded like any other report (:mod:`shared.services.bounces`)."""

from __future__ import annotations

import enum
import hashlib
import hmac
import time
from typing import Any

from shared.message_ids import email_id_in
from shared.services.bounces import Outcome, Report, record_report
from shared.services.context import ServiceContext


class ProviderVerdict(enum.Enum):
    RECORDED = "recorded"
    IGNORED = "ignored"  # an event that says nothing about bounces (delivered, opened, ...)
    MALFORMED = "malformed"
    FORGED = "forged"  # bad or missing signature, stale timestamp, or a replayed token
    DISABLED = "disabled"  # MAILGUN_WEBHOOK_SIGNING_KEY is not set


MAILGUN_TOLERANCE = 15 * 60  # seconds between Mailgun signing an event and our reading it


async def accept_mailgun_event(ctx: ServiceContext, body: object) -> ProviderVerdict:
    """Verify a Mailgun event webhook as Mailgun documents it (hex HMAC-SHA256 of
    ``timestamp + token`` under the webhook signing key), refuse stale timestamps and
    replayed tokens, and record a bounce or complaint it reports like any other report."""
    key = ctx.settings.MAILGUN_WEBHOOK_SIGNING_KEY
    if key is None:
        return ProviderVerdict.DISABLED
    if not isinstance(body, dict):
        return ProviderVerdict.MALFORMED
    signature, event = body.get("signature"), body.get("event-data")
    if not isinstance(signature, dict) or not isinstance(event, dict):
        return ProviderVerdict.MALFORMED
    timestamp, token, mac = (str(signature.get(k, "")) for k in ("timestamp", "token", "signature"))
    # Mailgun's values are ASCII (digits, hex): anything else (a lone surrogate, a non-ASCII
    # digit) is forged, and never reaches the encoder or compare_digest, which refuse it.
    if not all(value.isascii() and value.isprintable() for value in (timestamp, token, mac)):
        return ProviderVerdict.FORGED
    if not (timestamp.isdigit() and token and mac) or len(token) > 200 or len(timestamp) > 12:
        return ProviderVerdict.FORGED
    expected = hmac.new(
        key.get_secret_value().encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, mac.lower()):
        return ProviderVerdict.FORGED
    if abs(time.time() - int(timestamp)) > MAILGUN_TOLERANCE:
        return ProviderVerdict.FORGED
    first = await ctx.redis.set(
        f"{ctx.settings.REDIS_KEY_PREFIX}mailgun-token:{token}", "1", nx=True,
        ex=2 * MAILGUN_TOLERANCE,
    )  # fmt: skip
    if not first:
        return ProviderVerdict.FORGED
    report = _mailgun_report(event)
    if report is None:
        return ProviderVerdict.IGNORED
    await record_report(ctx, report)
    return ProviderVerdict.RECORDED


def _mailgun_report(event: dict[str, Any]) -> Report | None:
    name, severity = str(event.get("event", "")), str(event.get("severity", ""))
    if name == "complained":
        outcome, detail = Outcome.COMPLAINT, "complaint (reported by the provider)"
    elif name == "failed":
        status = event.get("delivery-status")
        status = status if isinstance(status, dict) else {}
        said = " ".join(
            str(status.get(k) or "") for k in ("code", "message", "description")
        ).strip()
        outcome = Outcome.HARD_BOUNCE if severity == "permanent" else Outcome.SOFT_BOUNCE
        detail = said or str(event.get("reason") or "failed")
    else:
        return None
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    message_id = str(headers.get("message-id", "")) if isinstance(headers, dict) else ""
    email_id = email_id_in(message_id)
    recipient = str(event.get("recipient", ""))
    return Report("mailgun", "event", outcome, email_id, f"{detail} ({recipient})")
