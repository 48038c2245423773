"""Registration, login, logout, the account page and email confirmation (HTML forms).

The work itself is in web.actions, shared with the JSON API; this module turns outcomes into
pages, flashes and redirects.
"""

from __future__ import annotations

from quart import Blueprint, flash, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required
from sqlalchemy import func, select

from shared.models import Email, EmailStatus
from shared.services.accounts import ConfirmOutcome, UsernameTaken
from web import actions
from web.auth import current_account
from web.extensions import resources
from web.forms import ActionForm, LoginForm, RegistrationForm
from web.ratelimit import limit_posts
from web.security import safe_next

blueprint = Blueprint("accounts", __name__)

INVALID_TOKEN = "the token is invalid or has already expired"  # noqa: S105 (the seed's wording)
LOGIN_FAILED = "Login unsuccessful. Please check email and password."
CREATED = "Your account has been created! Check your email to confirm your address."


@blueprint.route("/register", methods=["GET", "POST"])
async def register() -> ResponseReturnValue:
    if await current_account() is not None:
        return redirect(url_for("main.home"))
    form = await RegistrationForm.from_request()
    if form.validate_on_submit():
        try:
            await actions.register(
                form.username.data or "", form.email.data or "", form.password.data or ""
            )
        except UsernameTaken:
            form.username.errors = ["That username is taken."]
        else:
            # Same message and redirect whether the address was new or already registered,
            # to prevent account enumeration; the owner of a known address gets a notice.
            await flash(CREATED, "success")
            return redirect(url_for("accounts.login"))
    return await render_template("accounts/register.html", title="Register", form=form)


@blueprint.route("/login", methods=["GET", "POST"])
@limit_posts("login")
async def login() -> ResponseReturnValue:
    next_url = safe_next(request.args.get("next"))
    if await current_account() is not None:
        return redirect(next_url)
    form = await LoginForm.from_request()
    if form.validate_on_submit():
        outcome = await actions.login(
            form.email.data or "", form.password.data or "", remember=bool(form.remember.data)
        )
        if outcome.user is not None:
            return redirect(next_url)
        if outcome.locked_for:
            await flash(
                "Too many failed attempts for this account. Try again in "
                f"{duration(outcome.locked_for)}, or reset your password.",
                "danger",
            )
            page = await render_template("accounts/login.html", title="Login", form=form)
            return page, 429, {"Retry-After": str(outcome.locked_for)}
        # One message for an unknown email and a wrong password.
        await flash(LOGIN_FAILED, "danger")
    return await render_template("accounts/login.html", title="Login", form=form)


@blueprint.post("/logout")
async def logout() -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token: logout must not be forgeable
    actions.logout()
    await flash("You have been logged out.", "info")
    return redirect(url_for("main.home"))


@blueprint.get("/account")
@login_required
async def account() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    async with resources().sessionmaker() as session:
        last_sent = await session.scalar(
            select(func.max(Email.sent_at)).where(
                Email.user_id == user.id, Email.status == EmailStatus.SENT
            )
        )
    return await render_template(
        "accounts/account.html",
        title="Account",
        user=user,
        last_sent=last_sent,
        form=await ActionForm.from_request(),
    )


@blueprint.post("/confirm/resend")
@login_required
async def resend_confirmation() -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()
    user = await current_account()
    assert user is not None
    outcome, next_allowed = await actions.resend_confirmation(user.id)
    if outcome is actions.Resend.ALREADY_CONFIRMED:
        await flash("Your email address is already confirmed.", "info")
    elif outcome is actions.Resend.SENT:
        await flash("A new confirmation email is on its way.", "success")
    else:
        assert next_allowed is not None
        await flash(
            "A confirmation email was sent recently. You can ask for another one at "
            f"{next_allowed:%H:%M:%S} UTC (in {duration(actions.seconds_until(next_allowed))}).",
            "warning",
        )
    return redirect(url_for("accounts.account"))


def duration(seconds: int) -> str:
    minutes, seconds = divmod(seconds, 60)
    if minutes and seconds:
        return f"{minutes} min {seconds} s"
    return f"{minutes} min" if minutes else f"{seconds} s"


@blueprint.route("/confirm/<token>", methods=["GET", "POST"])
async def confirm(token: str) -> ResponseReturnValue:
    """GET shows a button; only the POST confirms, so mail scanners that fetch links
    confirm nothing."""
    form = await ActionForm.from_request()
    if request.method == "GET":
        return await render_template("accounts/confirm.html", title="Confirm", form=form)
    form.validate_on_submit()
    outcome = await actions.confirm(token)
    if outcome is ConfirmOutcome.CONFIRMED:
        await flash("Thank you! Your email address is confirmed.", "success")
    elif outcome is ConfirmOutcome.ALREADY_CONFIRMED:
        await flash("Your email address is already confirmed.", "info")
    else:
        await flash(INVALID_TOKEN, "warning")
    target = "accounts.account" if await current_account() else "accounts.login"
    return redirect(url_for(target))
