"""Accounts: register, confirm the address, ``/me``."""

from __future__ import annotations

from quart_schema import document_response, validate_request, validate_response

from shared import i18n
from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import accounts, bounces, login_codes
from shared.services.accounts import ConfirmOutcome, TooManyRegistrations, UsernameTaken
from shared.services.sessions import Current
from web.api.base import ApiResult, blueprint, invalid_token, signed_in
from web.api.models import (
    DeliveryProblemOut,
    EmailAddress,
    EmailIn,
    Message,
    Model,
    NewPassword,
    TokenIn,
    Username,
    UserOut,
    user_out,
)
from web.auth import remember_code_request
from web.extensions import services
from web.problems import Problem, problem
from web.ratelimit import limit_posts


class RegisterIn(Model):
    username: Username
    email: EmailAddress
    # Without one, the account signs in with a code by email (the first one, emailed now,
    # finishes signing up: send it to /api/v1/login/code) or a passkey.
    password: NewPassword | None = None


@blueprint.post("/register")
@limit_posts("register")
@validate_request(RegisterIn)
@validate_response(Message, 202)
@document_response(Problem, 409)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def register(data: RegisterIn) -> ApiResult:
    """Create an account; a confirmation email follows. The same answer for an address that
    already has an account (its owner is emailed instead), to prevent account enumeration."""
    try:
        if data.password is None:
            binding = await login_codes.register(services(), data.username, data.email)
            remember_code_request(data.email, binding, remember=False)
        else:
            await accounts.register(services(), data.username, data.email, data.password)
    except UsernameTaken:
        return problem(
            409,
            N_("Username taken"),
            N_("That username is taken."),
            errors={"username": [N_("That username is taken.")]},
        )
    except TooManyRegistrations as error:
        return problem(
            429,
            N_("Too many sign-ups"),
            _("Many people are signing up right now. Please try again in %(wait)s.")
            % {"wait": i18n.format_duration(error.retry_after)},
            headers={"Retry-After": str(error.retry_after)},
        )
    if data.password is None:
        return Message(
            detail=_("Check your email: send the code in it to /api/v1/login/code to finish.")
        ), 202
    return Message(detail=_("Check your email to confirm your address.")), 202


@blueprint.get("/me")
@validate_response(UserOut, 200)
@signed_in
async def me(current: Current) -> ApiResult:
    out = user_out(current.user)
    found = await bounces.delivery_problem(services(), current.user)
    if found is not None:
        out.delivery_problem = DeliveryProblemOut(
            since=found.since, reason=found.reason, can_retry=found.can_retry
        )
    return out, 200


@blueprint.post("/confirm/request")
@limit_posts("confirm")
@validate_request(EmailIn)
@validate_response(Message, 202)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def confirm_request(data: EmailIn) -> ApiResult:
    """Send a fresh confirmation link if the address has an account waiting for
    confirmation (at most one per 3 minutes; older links stop working); the same answer
    either way."""
    await accounts.request_confirmation(services(), data.email)
    return Message(detail=_("If an account with that address is waiting for confirmation, "
                   "a new link is on its way.")), 202  # fmt: skip


@blueprint.post("/confirm")
@validate_request(TokenIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 422)
async def confirm(data: TokenIn) -> ApiResult:
    outcome = await accounts.confirm(services(), data.token)
    if outcome is ConfirmOutcome.INVALID:
        return invalid_token()
    if outcome is ConfirmOutcome.ALREADY_CONFIRMED:
        return Message(detail=_("Your email address is already confirmed.")), 200
    return Message(detail=_("Your email address is confirmed.")), 200
