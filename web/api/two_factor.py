"""Two-factor sign-in: its second step, enrolment, recovery codes, turning it off."""

from __future__ import annotations

from pydantic import BaseModel
from quart import session
from quart_schema import document_response, validate_request, validate_response

from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import two_factor
from shared.services.refusals import NotApplicable
from shared.services.sessions import Current
from web.api.base import (
    ApiResult,
    blueprint,
    signed_in,
)
from web.api.models import (
    Code,
    Empty,
    Message,
    Model,
    Password,
    ProofIn,
    SecondStepIn,
    UserOut,
    user_out,
)
from web.auth import SECOND_STEP, continue_session, sign_in_attempt, start_session
from web.extensions import services
from web.problems import Problem, problem
from web.ratelimit import limit_posts


class EnrolmentConfirmIn(Model):
    """A code from the new secret; turning two-factor on also needs a fresh proof that it
    is the owner (a recent sign-in, or the password: see ProofIn)."""

    code: Code
    password: Password | None = None


class EnrolmentOut(BaseModel):
    secret: str
    otpauth_uri: str


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class TwoFactorOut(BaseModel):
    enabled: bool
    recovery_codes_left: int


@blueprint.post("/login/two-factor")
@limit_posts("login")
@validate_request(SecondStepIn)
@validate_response(UserOut, 200)
@document_response(Problem, 400)
@document_response(Problem, 409)
@document_response(Problem, 429)
async def login_second_step(data: SecondStepIn) -> ApiResult:
    """The second step of signing in to an account with two-factor sign-in on."""
    state = session.get(SECOND_STEP)
    if not isinstance(state, dict) or not isinstance(state.get("pending"), str):
        return problem(409, N_("Not applicable"), N_("Sign in with the password first."))
    try:
        result = await two_factor.complete_sign_in(
            services(),
            state["pending"],
            data.code,
            sign_in_attempt(remember=bool(state.get("remember")), trust=data.trust_browser),
        )
    except NotApplicable:
        session.pop(SECOND_STEP, None)  # lapsed: the first step again
        raise
    assert result.user is not None
    await start_session(
        result.session_id, remember=bool(state.get("remember")), device_cookie=result.device_cookie
    )
    return user_out(result.user), 200


@blueprint.get("/two-factor")
@validate_response(TwoFactorOut, 200)
@signed_in
async def two_factor_status(current: Current) -> ApiResult:
    state = await two_factor.status(services(), current.user.id)
    return TwoFactorOut(enabled=state.enabled, recovery_codes_left=state.recovery_codes_left), 200


@blueprint.post("/two-factor/enrol")
@validate_request(Empty)
@validate_response(EnrolmentOut, 200)
@document_response(Problem, 409)
@signed_in
async def two_factor_enrol(current: Current, data: Empty) -> ApiResult:
    """A secret for an authenticator app; two-factor sign-in turns on when a code from it
    is sent to /two-factor/confirm."""
    enrolment = await two_factor.begin_enrolment(services(), current.user.id)
    if enrolment is None:
        return problem(409, N_("Already on"), N_("Two-factor sign-in is on already."))
    return EnrolmentOut(secret=enrolment.secret, otpauth_uri=enrolment.uri), 200


@blueprint.post("/two-factor/confirm")
@validate_request(EnrolmentConfirmIn)
@validate_response(RecoveryCodesOut, 200)
@document_response(Problem, 400)
@document_response(Problem, 409)
@document_response(Problem, 429)
@signed_in
async def two_factor_confirm(current: Current, data: EnrolmentConfirmIn) -> ApiResult:
    """Turn two-factor sign-in on (with the account's password and a code from the new
    secret); the recovery codes are in the answer, once. The session's cookie is renewed."""
    result = await two_factor.confirm_enrolment(
        services(), current.user.id, data.code, data.password or "", sign_in=current.session.id
    )
    await continue_session(result.session_id)
    return RecoveryCodesOut(recovery_codes=result.recovery_codes), 200


@blueprint.post("/two-factor/recovery-codes")
@validate_request(ProofIn)
@validate_response(RecoveryCodesOut, 200)
@document_response(Problem, 400)
@document_response(Problem, 409)
@document_response(Problem, 429)
@signed_in
async def two_factor_recovery_codes(current: Current, data: ProofIn) -> ApiResult:
    """New recovery codes (the old ones stop working)."""
    result = await two_factor.regenerate_codes(
        services(),
        current.user.id,
        data.password or "",
        data.code or "",
        sign_in=current.session.id,
    )
    return RecoveryCodesOut(recovery_codes=result.recovery_codes), 200


@blueprint.post("/two-factor/disable")
@validate_request(ProofIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 409)
@document_response(Problem, 429)
@signed_in
async def two_factor_disable(current: Current, data: ProofIn) -> ApiResult:
    result = await two_factor.disable(
        services(),
        current.user.id,
        data.password or "",
        data.code or "",
        sign_in=current.session.id,
    )
    await continue_session(result.session_id)
    return Message(detail=_("Two-factor sign-in is off.")), 200
