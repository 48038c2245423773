""" "Apps with access": the applications this account let sign it in through this service,
and removing one (as on /account/apps)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from quart_schema import document_response, validate_request, validate_response

from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services.identity import apps
from shared.services.sessions import Current
from web.api.base import ApiResult, blueprint, signed_in
from web.api.models import Empty, Message
from web.extensions import services
from web.problems import Problem, problem


class AppOut(BaseModel):
    client_id: str
    name: str
    scopes: list[str]
    since: datetime
    last_used_at: datetime | None


class AppsOut(BaseModel):
    apps: list[AppOut]


@blueprint.get("/apps")
@validate_response(AppsOut, 200)
@signed_in
async def list_apps(current: Current) -> ApiResult:
    """The applications with access, most recently used first."""
    listed = await apps.listed(services(), current.user.id)
    return AppsOut(
        apps=[
            AppOut(client_id=a.client_id, name=a.name, scopes=a.scopes, since=a.since,
                   last_used_at=a.last_used_at)
            for a in listed
        ]
    ), 200  # fmt: skip


@blueprint.post("/apps/<client_id>/remove")
@validate_request(Empty)
@validate_response(Message, 200)
@document_response(Problem, 404)
@signed_in
async def remove_app(current: Current, client_id: str, data: Empty) -> ApiResult:
    """Remove an application's access: its tokens end, and it must ask again."""
    if not await apps.remove(services(), current.user.id, client_id[:64]):
        return problem(
            404,
            N_("No such application"),
            N_("No application has access to this account with that id."),
        )
    return Message(detail=_("Its access is removed.")), 200
