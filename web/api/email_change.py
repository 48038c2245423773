"""Changing the account's address, and trying a bounced address again."""

from __future__ import annotations

from quart_schema import document_response, validate_request, validate_response

from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import bounces, email_change
from shared.services.email_change import ConfirmOutcome as EmailChangeOutcome
from shared.services.sessions import Current
from web.api.base import (
    ApiResult,
    blueprint,
    invalid_token,
    signed_in,
)
from web.api.models import EmailAddress, Empty, Message, ProofIn, TokenIn
from web.extensions import services
from web.problems import Problem, problem


class ChangeEmailIn(ProofIn):
    new_email: EmailAddress


@blueprint.post("/account/email")
@validate_request(ChangeEmailIn)
@validate_response(Message, 202)
@document_response(Problem, 400)
@document_response(Problem, 422)
@document_response(Problem, 429)
@signed_in
async def change_email(current: Current, data: ChangeEmailIn) -> ApiResult:
    """Ask to move the account to a new address: it receives a link, the current address a
    notice. The same answer whether or not the new address has an account."""
    await email_change.request_change(
        services(),
        current.user.id,
        data.new_email,
        data.password or "",
        sign_in=current.session.id,
    )
    return Message(detail=_("Check the new address for a link to confirm the change.")), 202


@blueprint.post("/account/email/retry")
@validate_request(Empty)
@validate_response(Message, 202)
@document_response(Problem, 409)
@signed_in
async def retry_email_delivery(current: Current, data: Empty) -> ApiResult:
    """After mail to the account's address bounced (see ``delivery_problem`` in ``/me``):
    try the address once more and resend the last message it missed. Once per account;
    after that, change the address."""
    if not await bounces.retry_for_owner(services(), current.user.id):
        return problem(
            409,
            N_("Nothing to retry"),
            N_(
                "There is no delivery problem to retry, or it was retried once already: change "
                "the address instead."
            ),
        )
    return Message(detail=_("We will try your address again.")), 202


@blueprint.post("/account/email/confirm")
@validate_request(TokenIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 422)
async def confirm_email_change(data: TokenIn) -> ApiResult:
    if await email_change.confirm_change(services(), data.token) is not EmailChangeOutcome.CHANGED:
        return invalid_token()
    return Message(detail=_("Your email address has been changed.")), 200
