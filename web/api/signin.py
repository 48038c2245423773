"""Signing in with a password, and out."""

from __future__ import annotations

from pydantic import StrictBool
from quart_schema import document_response, validate_request, validate_response

from shared import i18n
from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import signin
from web.api.base import ApiResult, blueprint, second_step_follows
from web.api.models import (
    EmailAddress,
    Empty,
    Message,
    Model,
    Password,
    SecondStepOut,
    UserOut,
    user_out,
)
from web.auth import end_session, sign_in_attempt, start_session
from web.extensions import services
from web.problems import Problem, problem
from web.ratelimit import limit_posts


class LoginIn(Model):
    email: EmailAddress
    password: Password
    remember: StrictBool = False


@blueprint.post("/login")
@limit_posts("login")
@validate_request(LoginIn)
@validate_response(UserOut, 200)
@validate_response(SecondStepOut, 202)
@document_response(Problem, 401)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def login(data: LoginIn) -> ApiResult:
    """Start a session (the same cookie as the site)."""
    outcome = await signin.login(
        services(),
        data.email,
        data.password,
        sign_in_attempt(remember=data.remember),
    )
    if outcome.locked_for:
        return problem(
            429, N_("Account temporarily locked"),
            _("Too many failed attempts for this account from here. Try again in %(wait)s, or "
              "reset your password.") % {"wait": i18n.format_duration(outcome.locked_for)},
            headers={"Retry-After": str(outcome.locked_for)},
        )  # fmt: skip
    if outcome.second_step is not None:
        return second_step_follows(
            outcome.second_step, remember=data.remember, accepted=N_("Password")
        )
    if outcome.user is None:
        return problem(
            401,
            N_("Sign-in failed"),
            N_(
                "Please check your email address and password. Signed up recently? Confirm your "
                "address first."
            ),
        )
    await start_session(
        outcome.session_id, remember=data.remember, device_cookie=outcome.device_cookie
    )
    return user_out(outcome.user), 200


@blueprint.post("/logout")
@validate_request(Empty)
@validate_response(Message, 200)
async def logout(data: Empty) -> ApiResult:
    await end_session()
    return Message(detail=_("Signed out.")), 200
