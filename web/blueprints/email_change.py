"""Changing the account's address (HTML forms): ask with the password, confirm from the link
the new address receives."""

from __future__ import annotations

from quart import Blueprint, Response, redirect, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared import links
from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import bounces, email_change
from shared.services.email_change import ConfirmOutcome
from shared.validation import EMAIL_CHANGE_LINK_DEAD, InvalidInput
from web.auth import current_account, current_session_id
from web.extensions import services
from web.flashes import flash
from web.forms import ActionForm, ChangeEmailForm
from web.reauth import fresh_authentication
from web.templating import render_template

blueprint = Blueprint("email_change", __name__)

REQUESTED = N_(
    "Check the new address: we sent it a link to confirm the change. Until then, your "
    "address stays as it is."
)


@blueprint.after_request
async def no_referrer(response: Response) -> Response:
    response.headers["Referrer-Policy"] = "no-referrer"  # confirmation URLs carry tokens
    return response


@blueprint.route("/account/email", methods=["GET", "POST"])
@login_required
@fresh_authentication
async def change() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    form = await ChangeEmailForm.from_request()
    if form.validate_on_submit():
        try:
            await email_change.request_change(
                services(),
                user.id,
                form.new_email.data,
                sign_in=current_session_id(),
            )
        except InvalidInput as error:
            form.show(error)
        else:
            # The same answer whether or not the new address has an account.
            await flash(REQUESTED, "info")
            return redirect(url_for("accounts.account"))
    return await render_template(
        "accounts/email.html", title=_("Change your email address"), form=form, user=user
    )


@blueprint.route(links.CHANGE_EMAIL.route, methods=["GET", "POST"])
async def confirm(token: str) -> ResponseReturnValue:
    """GET shows a button; only the POST changes the address (mail scanners fetch links)."""
    form = await ActionForm.from_request()
    if request.method == "GET":
        return await render_template(
            "accounts/email_confirm.html", title=_("Confirm your new address"), form=form
        )
    form.validate_on_submit()
    if await email_change.confirm_change(services(), token) is ConfirmOutcome.CHANGED:
        await flash("Your email address has been changed.", "success")
    else:
        await flash(EMAIL_CHANGE_LINK_DEAD, "warning")
    target = "accounts.account" if await current_account() else "accounts.login"
    return redirect(url_for(target))


@blueprint.post("/account/email/retry")
@login_required
async def retry_delivery() -> ResponseReturnValue:
    """The owner's one "try my address again" after it was put on the suppression list."""
    user = await current_account()
    assert user is not None
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    if await bounces.retry_for_owner(services(), user.id):
        await flash(RETRYING, "info")
    else:
        await flash(NO_RETRY, "danger")
    return redirect(url_for("accounts.account"))


RETRYING = N_(
    "We will try your address again, and resend the last message it missed. If it fails "
    "again, please change your address."
)
NO_RETRY = N_(
    "There is no delivery problem to retry, or you already asked once: please change your address."
)
