"""The account's security events."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from quart import request
from quart_schema import validate_response

from shared.services import events
from shared.services.sessions import Current
from web.api.base import ApiResult, blueprint, signed_in
from web.extensions import services


class EventOut(BaseModel):
    kind: str  # a dotted event type, e.g. user.password_changed
    description: str  # in words: "Password changed from Firefox on Windows, 2 hours ago"
    created_at: datetime
    client_address: str
    device: str


class ActivityOut(BaseModel):
    events: list[EventOut]
    page: int
    pages: int


@blueprint.get("/account/activity")
@validate_response(ActivityOut, 200)
@signed_in
async def account_activity(current: Current) -> ApiResult:
    """The account's security events, newest first, 20 a page (``?page=2``)."""
    page = await events.activity(
        services(), current.user.id, request.args.get("page", 1, type=int) or 1
    )
    return ActivityOut(
        events=[
            EventOut(
                kind=e.kind,
                description=events.in_words(e),
                created_at=e.created_at,
                client_address=e.client_address,
                device=e.device,
            )
            for e in page.events
        ],
        page=page.page,
        pages=page.pages,
    ), 200
