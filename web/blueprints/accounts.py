"""Registration, login, logout, the account page and email confirmation."""

from __future__ import annotations

from datetime import UTC, datetime

from quart import Blueprint, flash, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required, login_user, logout_user
from sqlalchemy import func, select

from shared import passwords
from shared.models import Email, EmailStatus, User
from shared.ratelimit import clear, hit, peek
from shared.services import accounts as service
from shared.tokens import Purpose, int_field
from web.auth import AccountUser, current_account, make_auth_id
from web.extensions import resources, tokens, transaction
from web.forms import ActionForm, LoginForm, RegistrationForm
from web.ratelimit import limit_posts
from web.security import safe_next

blueprint = Blueprint("accounts", __name__)

INVALID_TOKEN = "the token is invalid or has already expired"  # noqa: S105 (the seed's wording)
LOGIN_FAILED = "Login unsuccessful. Please check email and password."
LOGIN_FAILURES = "login-failures"  # rate-limit name: failed logins per account


@blueprint.route("/register", methods=["GET", "POST"])
async def register() -> ResponseReturnValue:
    if await current_account() is not None:
        return redirect(url_for("main.home"))
    form = await RegistrationForm.from_request()
    if form.validate_on_submit():
        settings = resources().settings
        # Hash before looking anything up: the response takes as long whether or not the
        # address already has an account.
        password_hash = await passwords.hash_password(form.password.data or "")
        try:
            async with transaction() as session:
                await service.register_user(
                    session,
                    username=form.username.data or "",
                    email=form.email.data or "",
                    password_hash=password_hash,
                    notice_interval=settings.CONFIRM_RESEND_INTERVAL,
                )
        except service.UsernameTaken:
            form.username.errors = ["That username is taken."]
        else:
            # Same message and redirect whether the address was new or already registered,
            # to prevent account enumeration; the owner of a known address gets a notice.
            await flash(
                "Your account has been created! Check your email to confirm your address.",
                "success",
            )
            return redirect(url_for("accounts.login"))
    return await render_template("accounts/register.html", title="Register", form=form)


@blueprint.route("/login", methods=["GET", "POST"])
@limit_posts("login")
async def login() -> ResponseReturnValue:
    next_url = safe_next(request.args.get("next"))
    if await current_account() is not None:
        return redirect(next_url)
    form = await LoginForm.from_request()
    status = 200
    if form.validate_on_submit():
        res = resources()
        settings = res.settings
        # Failures are counted per address typed (known or not, so the lock reveals nothing).
        # The lock is temporary, attempts during it are not counted, and a password reset
        # lifts it: an attacker cannot lock the owner out for good.
        subject = service.email_key(form.email.data or "")
        limits = {"limit": settings.LOGIN_FAILURES_BEFORE_LOCK,
                  "window": settings.LOGIN_LOCK_SECONDS}  # fmt: skip
        locked = await peek(res.queue, LOGIN_FAILURES, subject, **limits)
        if not locked.allowed:
            await flash(
                "Too many failed attempts for this account. Try again in "
                f"{_duration(locked.retry_after)}, or reset your password.",
                "danger",
            )
            return (
                await render_template("accounts/login.html", title="Login", form=form),
                429,
                {"Retry-After": str(locked.retry_after)},
            )
        async with transaction() as session:
            user = await service.authenticate(
                session, form.email.data or "", form.password.data or ""
            )
        if user is not None:
            await clear(res.queue, LOGIN_FAILURES, subject, window=limits["window"])
            remember = bool(form.remember.data)
            lifetime = settings.REMEMBER_LIFETIME if remember else settings.SESSION_LIFETIME
            login_user(AccountUser(make_auth_id(user, lifetime=lifetime)), remember=remember)
            return redirect(next_url)
        await hit(res.queue, LOGIN_FAILURES, subject, **limits)
        # One message for an unknown email and a wrong password.
        await flash(LOGIN_FAILED, "danger")
    return await render_template("accounts/login.html", title="Login", form=form), status


@blueprint.post("/logout")
async def logout() -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token: logout must not be forgeable
    logout_user()
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
    current = await current_account()
    assert current is not None
    settings = resources().settings
    async with transaction() as session:
        user = await session.get(User, current.id, with_for_update=True)
        assert user is not None
        if user.confirmed_at is not None:
            next_allowed = None
            message, category = "Your email address is already confirmed.", "info"
        else:
            next_allowed = await service.resend_confirmation(
                session, user, interval=settings.CONFIRM_RESEND_INTERVAL
            )
            message, category = "A new confirmation email is on its way.", "success"
    if next_allowed is not None:
        wait = max(1, int((next_allowed - datetime.now(UTC)).total_seconds()))
        message = (
            "A confirmation email was sent recently. You can ask for another one at "
            f"{next_allowed:%H:%M:%S} UTC (in {_duration(wait)})."
        )
        category = "warning"
    await flash(message, category)
    return redirect(url_for("accounts.account"))


def _duration(seconds: int) -> str:
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
    settings = resources().settings
    payload = tokens().loads(Purpose.CONFIRM_EMAIL, token, max_age=settings.CONFIRM_TOKEN_MAX_AGE)
    user_id = int_field(payload, "uid") if payload else None
    generation = int_field(payload, "gen") if payload else None
    outcome = service.ConfirmOutcome.INVALID
    if user_id is not None and generation is not None:
        async with transaction() as session:
            outcome = await service.confirm_email(session, user_id, generation)
    if outcome is service.ConfirmOutcome.CONFIRMED:
        await flash("Thank you! Your email address is confirmed.", "success")
    elif outcome is service.ConfirmOutcome.ALREADY_CONFIRMED:
        await flash("Your email address is already confirmed.", "info")
    else:
        await flash(INVALID_TOKEN, "warning")
    target = "accounts.account" if await current_account() else "accounts.login"
    return redirect(url_for(target))
