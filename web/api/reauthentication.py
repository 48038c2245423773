"""Re-authentication: show again that it is you, with any of the account's methods, before a
sensitive change (the answer to a 401 of type ``/problems/reauthentication-required``); for
REAUTHENTICATION_TIMEOUT afterwards, sensitive changes need nothing more."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from quart_schema import document_response, validate_request, validate_response

from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import login_codes, passkeys, proof, reauthentication
from shared.services.sessions import Current
from web.api.base import ApiResult, blueprint, signed_in
from web.api.models import CodeIn, Empty, Message, Model, ProofIn
from web.api.passkeys import AuthenticationCredentialIn, CeremonyOut
from web.auth import device_cookie, sign_in_attempt
from web.extensions import services
from web.problems import Problem
from web.ratelimit import limit_posts


class PasskeyReauthenticationIn(Model):
    ceremony: Annotated[str, Field(min_length=1, max_length=64)]
    credential: AuthenticationCredentialIn


DONE = N_("Confirmed: sensitive changes are open to this session for a few minutes.")


@blueprint.post("/reauthenticate")
@limit_posts("login")
@validate_request(ProofIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 422)
@document_response(Problem, 429)
@signed_in
async def reauthenticate(current: Current, data: ProofIn) -> ApiResult:
    """With the password, or an authenticator or recovery code."""
    offered = proof.Proof(
        password=data.password or "",
        code=data.code or "",
        field="password" if data.password else "code",
    )
    await reauthentication.with_typed(services(), current.user.id, current.session.id, offered)
    return Message(detail=DONE), 200


@blueprint.post("/reauthenticate/email")
@limit_posts("login")
@validate_request(Empty)
@validate_response(Message, 202)
@document_response(Problem, 429)
@signed_in
async def reauthentication_email(current: Current, data: Empty) -> ApiResult:
    """Email a code to this account's address; send it to /reauthenticate/email-code."""
    await login_codes.request_for_account(
        services(), current.user.id, device_cookie=device_cookie()
    )
    return Message(detail=_("A code is on its way to your email address.")), 202


@blueprint.post("/reauthenticate/email-code")
@limit_posts("login")
@validate_request(CodeIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 429)
@signed_in
async def reauthenticate_with_email_code(current: Current, data: CodeIn) -> ApiResult:
    await login_codes.reauthenticate(
        services(),
        current.user.id,
        current.session.id,
        data.code,
        sign_in_attempt(remember=False),
    )
    return Message(detail=DONE), 200


@blueprint.post("/reauthenticate/passkey/options")
@limit_posts("login")
@validate_request(Empty)
@validate_response(CeremonyOut, 200)
@document_response(Problem, 429)
@signed_in
async def reauthentication_passkey_options(current: Current, data: Empty) -> ApiResult:
    """Options for navigator.credentials.get(), for one of this account's passkeys."""
    ceremony = await passkeys.reauthentication_options(services(), current.user.id)
    return CeremonyOut(ceremony=ceremony.ceremony, options=ceremony.options), 200


@blueprint.post("/reauthenticate/passkey")
@limit_posts("login")
@validate_request(PasskeyReauthenticationIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 429)
@signed_in
async def reauthenticate_with_passkey(
    current: Current, data: PasskeyReauthenticationIn
) -> ApiResult:
    await passkeys.reauthenticate(
        services(),
        current.user.id,
        current.session.id,
        data.ceremony,
        data.credential.model_dump(exclude_none=True),
    )
    return Message(detail=DONE), 200
