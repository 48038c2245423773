"""Passwords: the reset by email, and changing it."""

from __future__ import annotations

from quart_schema import document_response, validate_request, validate_response

from shared.i18n import gettext as _
from shared.services import passwords
from shared.services.sessions import Current
from web import ratelimit
from web.api.base import (
    ApiResult,
    blueprint,
    invalid_token,
    signed_in,
)
from web.api.models import EmailIn, Empty, Message, Model, NewPassword, Password, Token
from web.auth import continue_session
from web.extensions import services
from web.problems import Problem
from web.ratelimit import limit_posts


class ResetIn(Model):
    token: Token
    password: NewPassword


class ChangePasswordIn(Model):
    password: NewPassword
    # Optional: a recent sign-in is the proof (see ProofIn).
    current_password: Password | None = None


@blueprint.post("/password-reset/request")
@limit_posts("reset")
@validate_request(EmailIn)
@validate_response(Message, 202)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def password_reset_request(data: EmailIn) -> ApiResult:
    """Email a reset link if the address has an account; the same answer either way."""
    await passwords.request_reset(services(), data.email)
    return Message(detail=_("If an account exists for that email, you will receive "
                   "instructions to reset your password.")), 202  # fmt: skip


@blueprint.post("/password-reset/confirm")
@limit_posts("reset")
@validate_request(ResetIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def password_reset_confirm(data: ResetIn) -> ApiResult:
    if not await passwords.reset_password(
        services(), data.token, data.password, client=ratelimit.client_address()
    ):
        return invalid_token()
    return Message(detail=_("Your password has been updated! You can now sign in.")), 200


@blueprint.post("/password/remove")
@validate_request(Empty)
@validate_response(Message, 200)
@document_response(Problem, 409)
@signed_in
async def password_remove(current: Current, data: Empty) -> ApiResult:
    """(sudo) Sign in without a password from now on: with a passkey (one is needed first:
    409 otherwise) or a code by email. Other sessions end, this one stays."""
    result = await passwords.remove_password(
        services(), current.user.id, sign_in=current.session.id
    )
    await continue_session(result.session_id)
    return Message(detail=_("Your password is removed.")), 200


@blueprint.post("/password/change")
@validate_request(ChangePasswordIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 422)
@document_response(Problem, 429)
@signed_in
async def password_change(current: Current, data: ChangePasswordIn) -> ApiResult:
    """Change the password; every other session ends, this one stays."""
    result = await passwords.change_password(
        services(),
        current.user.id,
        data.current_password or "",
        data.password,
        keep_session=current.session.id,
    )
    await continue_session(result.session_id)
    return Message(detail=_("Your password has been updated!")), 200
