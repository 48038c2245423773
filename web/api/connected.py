"""Connected accounts: the accounts at other identity providers that sign this account in,
listed and disconnected (as on /account/connected; connecting one is a browser's journey
through the provider, so it starts on the page)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from quart_schema import document_response, validate_request, validate_response

from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services.federation import connected
from shared.services.proof import Proof
from shared.services.sessions import Current
from web.api.base import ApiResult, blueprint, signed_in
from web.api.models import Message, ProofIn
from web.extensions import services
from web.problems import Problem, problem


class ConnectedOut(BaseModel):
    id: int
    provider: str
    name: str
    email: str | None
    connected_at: datetime
    last_used_at: datetime | None


class ConnectedListOut(BaseModel):
    connected_accounts: list[ConnectedOut]


@blueprint.get("/connected-accounts")
@validate_response(ConnectedListOut, 200)
@signed_in
async def list_connected(current: Current) -> ApiResult:
    listed = await connected.listed(services(), current.user.id)
    return ConnectedListOut(
        connected_accounts=[
            ConnectedOut(id=c.id, provider=c.provider, name=c.name, email=c.email,
                         connected_at=c.created_at, last_used_at=c.last_used_at)
            for c in listed
        ]
    ), 200  # fmt: skip


@blueprint.post("/connected-accounts/<int:identity_id>/unlink")
@validate_request(ProofIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 404)
@document_response(Problem, 409)
@document_response(Problem, 429)
@signed_in
async def unlink_connected(current: Current, identity_id: int, data: ProofIn) -> ApiResult:
    """(sudo) Disconnect one; never the account's only way to sign in (409)."""
    offered = Proof(sign_in=current.session.id, password=data.password or "", code=data.code or "")
    if not await connected.unlink(services(), current.user.id, identity_id, offered):
        return problem(
            404, N_("No such connected account"), N_("This account has none with that id.")
        )
    return Message(detail=_("Disconnected.")), 200
