"""Events from the mail provider: ``POST /hooks/mailgun`` takes Mailgun's signed event
webhooks (bounces and complaints) when MAILGUN_WEBHOOK_SIGNING_KEY is set.

Not part of /api/v1 (Mailgun, not our clients, calls it; no session, no CSRF token: the
signature is the authentication). Answers: 200 recorded or ignored, 400 not JSON of the
expected shape, 401 a bad signature, a stale timestamp or a replayed token, 404 when off.
"""

from __future__ import annotations

import json

from quart import Blueprint, request
from quart.typing import ResponseReturnValue

from shared.services import provider_events
from shared.services.provider_events import ProviderVerdict
from web.extensions import services

blueprint = Blueprint("provider_hooks", __name__)

_ANSWERS = {
    ProviderVerdict.RECORDED: ({"detail": "recorded"}, 200),
    ProviderVerdict.IGNORED: ({"detail": "nothing to record for this event"}, 200),
    ProviderVerdict.MALFORMED: ({"detail": "expected Mailgun's signature and event-data"}, 400),
    ProviderVerdict.FORGED: ({"detail": "signature invalid, expired or already used"}, 401),
    ProviderVerdict.DISABLED: ({"detail": "Not found"}, 404),
}


@blueprint.post("/hooks/mailgun")
async def mailgun() -> ResponseReturnValue:
    raw = await request.get_data()
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None  # not JSON (or not UTF-8): malformed, unless the hook is off anyway
    verdict = await provider_events.accept_mailgun_event(services(), body)
    return _ANSWERS[verdict]
