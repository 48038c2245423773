"""Password reset by email, changing a password, and "this wasn't me" (HTML forms)."""

from __future__ import annotations

from quart import Blueprint, Response, redirect, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared import links
from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import passwords, reauthentication
from shared.services.refusals import NotApplicable
from shared.validation import NOT_ME_LINK_DEAD, RESET_LINK_DEAD, InvalidInput
from web import ratelimit
from web.auth import continue_session, current_account, current_sign_in, end_session
from web.extensions import services
from web.flashes import flash
from web.forms import ActionForm, ChangePasswordForm, RequestResetForm, ResetPasswordForm
from web.ratelimit import limit_posts
from web.reauth import fresh_authentication
from web.templating import render_template

blueprint = Blueprint("reset", __name__)

REQUESTED = N_(
    "If an account exists for that email, you will receive instructions to reset your password."
)
UPDATED = N_("Your password has been updated! You can now sign in.")


@blueprint.after_request
async def no_referrer(response: Response) -> Response:
    # Reset and "wasn't me" URLs carry tokens: never leak them to another site.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.route(links.FORMER_REQUEST_RESET, methods=["GET", "POST"])
@blueprint.route(links.REQUEST_RESET, methods=["GET", "POST"])
@limit_posts("reset")
async def request_reset() -> ResponseReturnValue:
    if former := _former_path(links.FORMER_REQUEST_RESET, links.REQUEST_RESET):
        return former
    if await current_account() is not None:
        return redirect(url_for("main.home"))
    form = await RequestResetForm.from_request()
    if form.validate_on_submit():
        await passwords.request_reset(services(), form.email.data)
        # The same answer whatever happened, to prevent account enumeration.
        await flash(REQUESTED, "info")
        return redirect(url_for("accounts.login"))
    return await render_template("reset/request.html", title=_("Reset your password"), form=form)


@blueprint.route(links.FORMER_RESET_PASSWORD.route, methods=["GET", "POST"])
@blueprint.route(links.RESET_PASSWORD.route, methods=["GET", "POST"])
@limit_posts("reset")
async def reset_with_token(token: str) -> ResponseReturnValue:
    if former := _former_path(links.FORMER_RESET_PASSWORD.prefix, links.RESET_PASSWORD.prefix):
        return former
    if await current_account() is not None:
        return redirect(url_for("main.home"))
    if not await passwords.reset_link_works(services(), token):
        await flash(RESET_LINK_DEAD, "warning")
        return redirect(url_for("reset.request_reset"))
    form = await ResetPasswordForm.from_request()
    if form.validate_on_submit():
        try:
            done = await passwords.reset_password(
                services(), token, form.password.data, client=ratelimit.client_address()
            )
        except InvalidInput as error:
            form.show(error)
        else:
            if not done:  # used or superseded since the check above
                await flash(RESET_LINK_DEAD, "warning")
                return redirect(url_for("reset.request_reset"))
            await flash(UPDATED, "success")
            return redirect(url_for("accounts.login"))
    return await render_template("reset/reset.html", title=_("Reset your password"), form=form)


def _former_path(former: str, current: str) -> ResponseReturnValue | None:
    """A page asked for at its former path (``/reset_password``, from before the routes were
    named alike): shown at its current one (301, so bookmarks follow), while a form posted
    there is answered as it was (a redirect would lose nothing, but would cost a round trip
    to a browser that may not repeat the POST)."""
    if request.method != "GET" or not request.path.startswith(former):
        return None
    target = current + request.path[len(former) :]
    if request.query_string:
        target += "?" + request.query_string.decode("ascii", "replace")
    return redirect(target, 301)


@blueprint.route("/account/password", methods=["GET", "POST"])
@login_required
@fresh_authentication
async def change_password() -> ResponseReturnValue:
    current = await current_sign_in()
    assert current is not None
    form = await ChangePasswordForm.from_request()
    if form.validate_on_submit():
        try:
            result = await passwords.change_password(
                services(),
                current.user.id,
                "",  # the proof is this sign-in's recent authentication
                form.password.data,
                keep_session=current.session.id,
            )
        except InvalidInput as error:
            form.show(error)
        else:
            await continue_session(result.session_id)
            await flash("Your password has been updated!", "success")
            return redirect(url_for("accounts.account"))
    methods = await reauthentication.methods(services(), current.user.id)
    return await render_template(
        "reset/change.html",
        title=_("Change your password") if methods.password else "Set a password",
        form=form,
        methods=methods,
        remove_form=await ActionForm.from_request(),
    )


@blueprint.post("/account/password/remove")
@login_required
async def remove_password() -> ResponseReturnValue:
    """Sign in without a password from now on (with a passkey, or a code by email)."""
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    current = await current_sign_in()
    assert current is not None
    try:
        result = await passwords.remove_password(
            services(), current.user.id, sign_in=current.session.id
        )
    except NotApplicable as refusal:
        await flash(refusal.message, "warning")
        return redirect(url_for("reset.change_password"))
    await continue_session(result.session_id)
    await flash(
        "Your password is removed: sign in with your passkey or a code we email you.", "success"
    )
    return redirect(url_for("accounts.account"))


@blueprint.route(links.NOT_ME.route, methods=["GET", "POST"])
async def not_me(token: str) -> ResponseReturnValue:
    """The "this wasn't me" link from a password-changed email: after one confirming click,
    end every session of the account and email a fresh reset link."""
    form = await ActionForm.from_request()
    if request.method == "GET":
        return await render_template("reset/not_me.html", title=_("Secure your account"), form=form)
    form.validate_on_submit()
    undone = await passwords.disown_change(services(), token)
    if undone is None:
        await flash(NOT_ME_LINK_DEAD, "warning")
        return redirect(url_for("reset.request_reset"))
    await end_session()
    for said in [_("Every session of your account has been ended."), *_undone_in_words(undone)]:
        await flash(said, "info")
    await flash(_("We sent you an email with a link to set a new password."), "info")
    return redirect(url_for("accounts.login"))


def _undone_in_words(undone: passwords.Disowned) -> list[str]:
    said = []
    if undone.passkeys_removed:
        names = ", ".join(f"“{name}”" for name in undone.passkeys_removed)
        said.append(_("The passkeys added since were removed (%(names)s).") % {"names": names})
    if undone.two_factor_turned_off:
        said.append(_("Two-factor sign-in, turned on since, was turned off."))
    if undone.email_change_cancelled:
        said.append(_("The address change waiting for confirmation was cancelled."))
    return said
