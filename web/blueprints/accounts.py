"""Registration, login, logout, the account page and email confirmation (HTML forms).

Each view parses its form, calls one use case and turns the outcome into a page, a flash or
a redirect.
"""

from __future__ import annotations

from quart import Blueprint, redirect, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared import i18n, links
from shared.i18n import N_
from shared.i18n import gettext as _
from shared.models import EMAIL_MAX_LENGTH
from shared.services import accounts, bounces, login_codes, signin
from shared.services.accounts import ConfirmOutcome, TooManyRegistrations, UsernameTaken
from shared.validation import CONFIRM_LINK_DEAD, InvalidInput
from web.auth import (
    current_account,
    end_session,
    remember_code_request,
    sign_in_attempt,
    start_session,
)
from web.blueprints.two_factor import remember_second_step
from web.extensions import services
from web.flashes import flash
from web.forms import ActionForm, LoginForm, RegistrationForm, ResendConfirmationForm
from web.ratelimit import limit_posts, too_many
from web.security import safe_next
from web.templating import render_template

blueprint = Blueprint("accounts", __name__)

LOGIN_FAILED = N_(
    "Sign-in failed. Please check your email address and password. Signed up recently? Confirm "
    "your address first with the link we emailed you."
)
CREATED = N_("Your account has been created! Check your email to confirm your address.")
CREATED_FINISH_BY_CODE = N_(
    "Your account has been created! Enter the code we emailed you to finish: you sign in "
    "with a code by email (or a passkey, once you add one)."
)
RESENT = N_(
    "If an account with that address is waiting for confirmation, a new link is on its way."
)


@blueprint.route("/register", methods=["GET", "POST"])
@limit_posts("register")
async def register() -> ResponseReturnValue:
    if await current_account() is not None:
        return redirect(url_for("main.home"))
    form = await RegistrationForm.from_request()
    if form.validate_on_submit():
        passwordless = not form.password.data
        try:
            if passwordless:
                binding = await login_codes.register(
                    services(), form.username.data, form.email.data
                )
            else:
                await accounts.register(
                    services(), form.username.data, form.email.data, form.password.data
                )
        except UsernameTaken:
            form.username.errors = [N_("That username is taken.")]
        except InvalidInput as error:
            form.show(error)
        except TooManyRegistrations as error:
            raise too_many(
                _("Many people are signing up right now. Please try again in %(wait)s.")
                % {"wait": i18n.format_duration(error.retry_after)},
                error.retry_after,
            ) from None
        else:
            # Same message and redirect whether the address was new or already registered,
            # to prevent account enumeration; the owner of a known address gets a notice.
            if passwordless:  # the emailed code finishes it, typed in this browser
                remember_code_request(form.email.data, binding, remember=False, next_url="/")
                await flash(CREATED_FINISH_BY_CODE, "success")
                return redirect(url_for("login_codes.enter_code"))
            await flash(CREATED, "success")
            return redirect(url_for("accounts.login"))
    return await render_template("accounts/register.html", title=_("Sign up"), form=form)


@blueprint.route("/login", methods=["GET", "POST"])
@limit_posts("login")
async def login() -> ResponseReturnValue:
    next_url = safe_next(request.args.get("next"))
    if await current_account() is not None:
        return redirect(next_url)
    form = await LoginForm.from_request()
    if request.method == "GET" and request.args.get("login_hint"):
        # An application's hint (OpenID Connect login_hint): who it believes is signing in.
        form.email.data = request.args["login_hint"][:EMAIL_MAX_LENGTH]
    if form.validate_on_submit():
        outcome = await signin.login(
            services(),
            form.email.data,
            form.password.data,
            sign_in_attempt(remember=bool(form.remember.data)),
        )
        if outcome.second_step is not None:
            remember_second_step(
                outcome.second_step, remember=bool(form.remember.data), next_url=next_url
            )
            return redirect(url_for("two_factor.second_step"))
        if outcome.user is not None:
            await start_session(
                outcome.session_id,
                remember=bool(form.remember.data),
                device_cookie=outcome.device_cookie,
            )
            return redirect(next_url)
        if outcome.locked_for:
            await flash(
                _(
                    "Too many failed attempts for this account from here. Try again in "
                    "%(wait)s, or reset your password."
                )
                % {"wait": i18n.format_duration(outcome.locked_for)},
                "danger",
            )
            page = await render_template(
                "accounts/login.html", title=_("Sign in"), form=form, next_url=next_url
            )
            return page, 429, {"Retry-After": str(outcome.locked_for)}
        # One message for an unknown email and a wrong password.
        await flash(LOGIN_FAILED, "danger")
    return await render_template(
        "accounts/login.html", title=_("Sign in"), form=form, next_url=next_url
    )


@blueprint.post("/logout")
async def logout() -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token: logout must not be forgeable
    await end_session()
    await flash("You are signed out.", "info")
    return redirect(url_for("main.home"))


@blueprint.get("/account")
@login_required
async def account() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    return await render_template(
        "accounts/account.html",
        title=_("Account"),
        user=user,
        language_name=i18n.name_of(i18n.current()),
        last_sent=await accounts.last_email_sent(services(), user.id),
        delivery_problem=await bounces.delivery_problem(services(), user),
        form=await ActionForm.from_request(),
    )


@blueprint.route("/confirm/resend", methods=["GET", "POST"])
@limit_posts("confirm")
async def resend_confirmation() -> ResponseReturnValue:
    """A new confirmation link, asked for signed out (signing in needs a confirmed
    address); the same answer whatever the address."""
    form = await ResendConfirmationForm.from_request()
    if form.validate_on_submit():
        await accounts.request_confirmation(services(), form.email.data)
        await flash(RESENT, "info")
        return redirect(url_for("accounts.login"))
    return await render_template("accounts/resend.html", title=_("Confirmation link"), form=form)


@blueprint.route(links.CONFIRM_EMAIL.route, methods=["GET", "POST"])
async def confirm(token: str) -> ResponseReturnValue:
    """GET shows a button; only the POST confirms, so mail scanners that fetch links
    confirm nothing."""
    if not accounts.confirmation_link_genuine(services(), token):
        # Not one we made, or past its time: say so at once, not "one more click".
        await flash(CONFIRM_LINK_DEAD, "warning")
        return redirect(url_for("accounts.login"))
    form = await ActionForm.from_request()
    if request.method == "GET":
        return await render_template("accounts/confirm.html", title=_("Confirm"), form=form)
    form.validate_on_submit()
    outcome = await accounts.confirm(services(), token)
    if outcome is ConfirmOutcome.CONFIRMED:
        await flash("Thank you! Your email address is confirmed.", "success")
    elif outcome is ConfirmOutcome.ALREADY_CONFIRMED:
        await flash("Your email address is already confirmed.", "info")
    else:
        await flash(CONFIRM_LINK_DEAD, "warning")
    target = "accounts.account" if await current_account() else "accounts.login"
    return redirect(url_for(target))
