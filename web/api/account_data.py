"""The account's data: export and deletion."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from quart_schema import document_response, validate_request, validate_response

from shared.i18n import gettext as _
from shared.services import account_data
from shared.services.sessions import Current
from shared.validation import USERNAME
from web.api.base import ApiResult, blueprint, signed_in
from web.api.models import Message, ProofIn
from web.auth import end_session
from web.extensions import services
from web.problems import Problem


class DeleteIn(ProofIn):
    username: Annotated[str, Field(min_length=1, max_length=USERNAME.max_length)]


class ProfileExport(BaseModel):
    username: str
    email: str
    confirmed_at: str | None
    created_at: str | None
    last_sign_in_at: str | None
    two_factor_enabled_at: str | None
    has_password: bool  # False: it signs in by passkey or emailed code


class TrustedBrowserExport(BaseModel):
    device: str
    client_address: str
    created_at: str | None
    expires_at: str | None


class TextExport(BaseModel):
    title: str
    content: str
    created_at: str | None


class SessionExport(BaseModel):
    device: str
    client_address: str
    user_agent: str
    created_at: str | None
    last_seen_at: str | None
    methods: list[str]
    authenticated_at: str | None
    expires_at: str | None
    ended_at: str | None


class EmailExport(BaseModel):
    kind: str
    to: str
    status: str
    queued_at: str | None
    sent_at: str | None


class PasskeyExport(BaseModel):
    name: str
    created_at: str | None
    last_used_at: str | None


class EventExport(BaseModel):
    kind: str
    at: str | None
    client_address: str
    device: str
    details: dict[str, Any]


class AccountExport(BaseModel):
    format: int
    profile: ProfileExport
    texts: list[TextExport]
    sessions: list[SessionExport]
    passkeys: list[PasskeyExport]
    trusted_browsers: list[TrustedBrowserExport]
    events: list[EventExport]
    emails: list[EmailExport]


@blueprint.get("/account/export")
@validate_response(AccountExport, 200)
@signed_in
async def export_account(current: Current) -> ApiResult:
    """Everything stored about this account (profile, Texts, sign-ins, emails), as JSON."""
    data = await account_data.export_account(
        services(), current.user.id, sign_in=current.session.id
    )
    return AccountExport.model_validate(data), 200


@blueprint.post("/account/delete")
@validate_request(DeleteIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 422)
@document_response(Problem, 429)
@signed_in
async def delete_account(current: Current, data: DeleteIn) -> ApiResult:
    """Delete this account and everything that is its own; signs out. Needs a fresh proof
    (see ProofIn) and the username typed as confirmation."""
    await account_data.delete_account(
        services(),
        current.user.id,
        data.password or "",
        data.username,
        sign_in=current.session.id,
    )
    await end_session()
    return Message(detail=_("Your account has been deleted.")), 200
