"""Password reset by email, changing a password, and "this wasn't me" (HTML forms).

The work itself is in web.actions, shared with the JSON API.
"""

from __future__ import annotations

from quart import Blueprint, Response, flash, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from web import actions
from web.auth import current_account
from web.blueprints.accounts import INVALID_TOKEN
from web.forms import ActionForm, ChangePasswordForm, RequestResetForm, ResetPasswordForm
from web.ratelimit import limit_posts

blueprint = Blueprint("reset", __name__)

REQUESTED = (
    "If an account exists for that email, you will receive instructions to reset your password."
)
UPDATED = "Your password has been updated! You are now able to log in"


@blueprint.after_request
async def no_referrer(response: Response) -> Response:
    # Reset and "wasn't me" URLs carry tokens: never leak them to another site.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.route("/reset_password", methods=["GET", "POST"])
@limit_posts("reset")
async def request_reset() -> ResponseReturnValue:
    if await current_account() is not None:
        return redirect(url_for("main.home"))
    form = await RequestResetForm.from_request()
    if form.validate_on_submit():
        await actions.request_reset(form.email.data or "")
        # The same answer whatever happened, to prevent account enumeration.
        await flash(REQUESTED, "info")
        return redirect(url_for("accounts.login"))
    return await render_template("reset/request.html", title="Reset Password", form=form)


@blueprint.route("/reset_password/<token>", methods=["GET", "POST"])
@limit_posts("reset")
async def reset_with_token(token: str) -> ResponseReturnValue:
    if await current_account() is not None:
        return redirect(url_for("main.home"))
    user = await actions.reset_token_user(token)
    if user is None:
        await flash(INVALID_TOKEN, "warning")
        return redirect(url_for("reset.request_reset"))
    form = await ResetPasswordForm.from_request(user=user)
    if form.validate_on_submit():
        if not await actions.reset_password(token, form.password.data or ""):
            await flash(INVALID_TOKEN, "warning")
            return redirect(url_for("reset.request_reset"))
        await flash(UPDATED, "success")
        return redirect(url_for("accounts.login"))
    return await render_template("reset/reset.html", title="Reset Password", form=form)


@blueprint.route("/account/password", methods=["GET", "POST"])
@login_required
async def change_password() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    form = await ChangePasswordForm.from_request(user=user)
    if form.validate_on_submit():
        changed = await actions.change_password(
            user, form.current_password.data or "", form.password.data or ""
        )
        if changed:
            await flash("Your password has been updated!", "success")
            return redirect(url_for("accounts.account"))
        form.current_password.errors = ["Your current password is not correct."]
    return await render_template("reset/change.html", title="Change Password", form=form)


@blueprint.route("/account/not-me/<token>", methods=["GET", "POST"])
async def not_me(token: str) -> ResponseReturnValue:
    """The "this wasn't me" link from a password-changed email: after one confirming click,
    end every session of the account and email a fresh reset link."""
    form = await ActionForm.from_request()
    if request.method == "GET":
        return await render_template("reset/not_me.html", title="Secure your account", form=form)
    form.validate_on_submit()
    if not await actions.disown_change(token):
        await flash(INVALID_TOKEN, "warning")
        return redirect(url_for("reset.request_reset"))
    await flash(
        "Every session of your account has been ended. We sent you an email with a link "
        "to set a new password.",
        "info",
    )
    return redirect(url_for("accounts.login"))
