"""Signing in with a code from your email: ask for one (202, whatever the address), then send
it. The session cookie remembers which address asked, and when, as on the pages."""

from __future__ import annotations

from pydantic import StrictBool
from quart import session
from quart_schema import document_response, validate_request, validate_response

from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import login_codes
from shared.services.refusals import CodeSpent
from web.api.base import ApiResult, blueprint, second_step_follows
from web.api.models import (
    CodeIn,
    EmailAddress,
    Message,
    Model,
    SecondStepOut,
    UserOut,
    user_out,
)
from web.auth import (
    LOGIN_CODE,
    code_request,
    code_request_expired,
    device_cookie,
    remember_code_request,
    sign_in_attempt,
    start_session,
)
from web.extensions import services
from web.problems import Problem, problem
from web.ratelimit import limit_posts


class LoginCodeRequestIn(Model):
    email: EmailAddress
    remember: StrictBool = False


@blueprint.post("/login/code/request")
@limit_posts("login")
@validate_request(LoginCodeRequestIn)
@validate_response(Message, 202)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def request_login_code(data: LoginCodeRequestIn) -> ApiResult:
    """Email a sign-in code to the address, if it has an account (the answer is the same
    either way). Then send the code to /api/v1/login/code, with this session's cookie."""
    binding = await login_codes.request(services(), data.email, device_cookie=device_cookie())
    remember_code_request(data.email, binding, remember=data.remember)
    return Message(
        detail=_(
            "If that address has an account, a sign-in code is on its way. Send it to "
            "/api/v1/login/code."
        )
    ), 202


@blueprint.post("/login/code")
@limit_posts("login")
@validate_request(CodeIn)
@validate_response(UserOut, 200)
@validate_response(SecondStepOut, 202)
@document_response(Problem, 400)
@document_response(Problem, 409)
@document_response(Problem, 429)
async def login_with_code(data: CodeIn) -> ApiResult:
    """Sign in with the emailed code. On an account with two-factor sign-in, the answer is
    202 and the second step follows (/api/v1/login/two-factor)."""
    state = code_request()
    if state is None:
        return problem(
            409, N_("Not applicable"), N_("Ask for a code first: /api/v1/login/code/request.")
        )
    if code_request_expired(state):
        session.pop(LOGIN_CODE, None)
        return problem(409, N_("Code expired"), N_("That code has expired. Ask for a new one."))
    remember = bool(state.get("remember"))
    try:
        result = await login_codes.with_code(
            services(), state["email"], data.code, sign_in_attempt(remember=remember)
        )
    except CodeSpent:
        session.pop(LOGIN_CODE, None)
        raise
    if result.second_step is not None:
        return second_step_follows(result.second_step, remember=remember, accepted=N_("Code"))
    await start_session(result.session_id, remember=remember, device_cookie=result.device_cookie)
    return user_out(result.user), 200
