"""Passkeys: listing, adding (after a fresh proof), removing, and signing in with one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from quart import session
from quart_schema import document_response, validate_request, validate_response

from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import passkeys
from shared.services.proof import Proof
from shared.services.sessions import Current
from web import ratelimit
from web.api.base import (
    ApiResult,
    blueprint,
    second_step_follows,
    signed_in,
)
from web.api.models import (
    Empty,
    Message,
    Model,
    ProofIn,
    SecondStepOut,
    UserOut,
    user_out,
)
from web.auth import SECOND_STEP, continue_session, sign_in_attempt, start_session
from web.extensions import services
from web.problems import Problem
from web.ratelimit import limit_posts


class CeremonyOut(BaseModel):
    ceremony: str
    options: dict[str, Any]


# WebAuthn's JSON (what PublicKeyCredential.toJSON() gives): binary fields as base64url. The
# shapes are stated so that a malformed answer is refused with 422 before py_webauthn reads
# it, and so that a fuzzer reading the schema sends structured answers, not only {}.
Base64Url = Annotated[str, Field(max_length=8_000, pattern=r"^[A-Za-z0-9_-]*$")]


class WebAuthnModel(BaseModel):
    # Browsers add fields (authenticatorAttachment, publicKey ...) that change nothing here.
    model_config = ConfigDict(extra="ignore", str_max_length=8_000, regex_engine="python-re")


class AttestationResponseIn(WebAuthnModel):
    clientDataJSON: Base64Url
    attestationObject: Base64Url
    transports: list[Annotated[str, Field(max_length=32)]] = Field(default=[], max_length=8)


class AssertionResponseIn(WebAuthnModel):
    clientDataJSON: Base64Url
    authenticatorData: Base64Url
    signature: Base64Url
    userHandle: Base64Url | None = None


class RegistrationCredentialIn(WebAuthnModel):
    id: Base64Url
    rawId: Base64Url
    type: Literal["public-key"]
    response: AttestationResponseIn


class AuthenticationCredentialIn(WebAuthnModel):
    id: Base64Url
    rawId: Base64Url
    type: Literal["public-key"]
    response: AssertionResponseIn


class PasskeyIn(Model):
    ceremony: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=60)] = "Passkey"
    credential: RegistrationCredentialIn


class PasskeySignInIn(Model):
    ceremony: Annotated[str, Field(min_length=1, max_length=64)]
    credential: AuthenticationCredentialIn
    # As a second step: remember this browser (TRUSTED_BROWSER_DAYS), so that its next
    # sign-ins to this account need one factor.
    trust_browser: StrictBool = False


class PasskeyOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


class PasskeysOut(BaseModel):
    passkeys: list[PasskeyOut]


@blueprint.get("/passkeys")
@validate_response(PasskeysOut, 200)
@signed_in
async def list_passkeys(current: Current) -> ApiResult:
    found = await passkeys.listed(services(), current.user.id)
    return PasskeysOut(
        passkeys=[
            PasskeyOut(id=p.id, name=p.name, created_at=p.created_at, last_used_at=p.last_used_at)
            for p in found
        ]
    ), 200


@blueprint.post("/passkeys/register/options")
@validate_request(ProofIn)
@validate_response(CeremonyOut, 200)
@document_response(Problem, 400)
@document_response(Problem, 422)
@document_response(Problem, 429)
@signed_in
async def passkey_registration_options(current: Current, data: ProofIn) -> ApiResult:
    """Options for navigator.credentials.create(), once the password (or a current
    authenticator code) proves it is the owner; answer with /passkeys/register."""
    offered = Proof(sign_in=current.session.id, password=data.password or "", code=data.code or "")
    ceremony = await passkeys.registration_options(services(), current.user.id, offered)
    return CeremonyOut(ceremony=ceremony.ceremony, options=ceremony.options), 200


@blueprint.post("/passkeys/register")
@validate_request(PasskeyIn)
@validate_response(Message, 201)
@document_response(Problem, 400)
@signed_in
async def passkey_register(current: Current, data: PasskeyIn) -> ApiResult:
    result = await passkeys.register(
        services(),
        current.user.id,
        data.ceremony,
        data.name,
        data.credential.model_dump(exclude_none=True),
        sign_in=current.session.id,
    )
    await continue_session(result.session_id)
    return Message(detail=_("Passkey added.")), 201


@blueprint.post("/passkeys/<int:passkey_id>/remove")
@validate_request(ProofIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 404)
@document_response(Problem, 429)
@signed_in
async def passkey_remove(current: Current, passkey_id: int, data: ProofIn) -> ApiResult:
    result = await passkeys.remove(
        services(), current.user.id, passkey_id, data.password or "", sign_in=current.session.id
    )
    await continue_session(result.session_id)
    return Message(detail=_("Passkey removed.")), 200


@blueprint.post("/login/passkey/options")
@limit_posts("login")
@validate_request(Empty)
@validate_response(CeremonyOut, 200)
@document_response(Problem, 429)
async def passkey_sign_in_options(data: Empty) -> ApiResult:
    """Options for navigator.credentials.get(): any passkey of this site, or, while a
    two-factor sign-in waits for its second step, that account's."""
    state = session.get(SECOND_STEP)
    pending = state.get("pending") if isinstance(state, dict) else None
    ceremony = await passkeys.sign_in_options(
        services(),
        client=ratelimit.client_address(),
        second_step=pending if isinstance(pending, str) else None,
    )
    return CeremonyOut(ceremony=ceremony.ceremony, options=ceremony.options), 200


@blueprint.post("/login/passkey")
@limit_posts("login")
@validate_request(PasskeySignInIn)
@validate_response(UserOut, 200)
@validate_response(SecondStepOut, 202)
@document_response(Problem, 400)
@document_response(Problem, 429)
async def passkey_sign_in(data: PasskeySignInIn) -> ApiResult:
    """Sign in with a passkey (the whole sign-in, or a two-factor sign-in's second step).
    A passkey without user verification is one factor: on an account with two-factor
    sign-in, the answer is 202 and the second step follows, as after a password."""
    state = session.get(SECOND_STEP)
    remember = bool(state.get("remember")) if isinstance(state, dict) else False
    result = await passkeys.sign_in(
        services(),
        data.ceremony,
        data.credential.model_dump(exclude_none=True),
        sign_in_attempt(remember=remember, trust=data.trust_browser),
    )
    if result.second_step is not None:
        return second_step_follows(result.second_step, remember=remember, accepted=N_("Passkey"))
    assert result.user is not None
    await start_session(result.session_id, remember=remember, device_cookie=result.device_cookie)
    return user_out(result.user), 200
