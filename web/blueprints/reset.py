"""Password reset by email, changing a password, and "this wasn't me"."""

from __future__ import annotations

import time

from quart import Blueprint, Response, flash, redirect, render_template, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import current_user, login_required, login_user, logout_user

from shared import passwords
from shared.models import User
from shared.ratelimit import clear, hit
from shared.services import reset as service
from shared.tokens import Purpose, int_field
from web.auth import AccountUser, current_account, make_auth_id, parse_auth_id
from web.blueprints.accounts import INVALID_TOKEN, LOGIN_FAILURES
from web.extensions import resources, tokens, transaction
from web.forms import ActionForm, ChangePasswordForm, RequestResetForm, ResetPasswordForm
from web.ratelimit import limit_posts

blueprint = Blueprint("reset", __name__)

REQUESTED = (
    "If an account exists for that email, you will receive instructions to reset your password."
)
UPDATED = "Your password has been updated! You are now able to log in"
HOUR = 3600


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
        res = resources()
        email = form.email.data or ""
        # Counted per address typed, known or not, so both cases do the same work.
        verdict = await hit(
            res.queue, "reset-emails", email.casefold(),
            limit=res.settings.RESET_EMAILS_PER_HOUR, window=HOUR,
        )  # fmt: skip
        async with transaction() as session:
            user = await service.find_user_by_email(session, email)
            if user is not None and verdict.allowed:
                await service.issue_reset(session, user)
        # The same answer whatever happened, to prevent account enumeration.
        await flash(REQUESTED, "info")
        return redirect(url_for("accounts.login"))
    return await render_template("reset/request.html", title="Reset Password", form=form)


def _reset_payload(token: str) -> dict[str, object] | None:
    return tokens().loads(
        Purpose.RESET_PASSWORD, token, max_age=resources().settings.RESET_TOKEN_MAX_AGE
    )


@blueprint.route("/reset_password/<token>", methods=["GET", "POST"])
@limit_posts("reset")
async def reset_with_token(token: str) -> ResponseReturnValue:
    if await current_account() is not None:
        return redirect(url_for("main.home"))
    res = resources()
    secret = res.settings.SECRET_KEY.get_secret_value()
    payload = _reset_payload(token)
    async with res.sessionmaker() as session:
        user = await service.user_for_reset_token(session, payload, secret)
    if user is None:
        await flash(INVALID_TOKEN, "warning")
        return redirect(url_for("reset.request_reset"))

    form = await ResetPasswordForm.from_request(user=user)
    if form.validate_on_submit():
        password_hash = await passwords.hash_password(form.password.data or "")
        async with transaction() as session:
            # Locked and checked again: of two concurrent uses of one link, one wins.
            locked = await service.user_for_reset_token(session, payload, secret, lock=True)
            if locked is not None:
                await service.set_password(session, locked, password_hash)
        if locked is None:
            await flash(INVALID_TOKEN, "warning")
            return redirect(url_for("reset.request_reset"))
        # A reset is the way out of a login lock.
        await clear(
            res.queue, LOGIN_FAILURES, locked.email_key, window=res.settings.LOGIN_LOCK_SECONDS
        )
        await flash(UPDATED, "success")
        return redirect(url_for("accounts.login"))
    return await render_template("reset/reset.html", title="Reset Password", form=form)


@blueprint.route("/account/password", methods=["GET", "POST"])
@login_required
async def change_password() -> ResponseReturnValue:
    current = await current_account()
    assert current is not None
    form = await ChangePasswordForm.from_request(user=current)
    if form.validate_on_submit():
        matches, _ = await passwords.verify_password(
            current.password_hash, form.current_password.data or ""
        )
        if not matches:
            form.current_password.errors = ["Your current password is not correct."]
        else:
            password_hash = await passwords.hash_password(form.password.data or "")
            async with transaction() as session:
                user = await session.get(User, current.id, with_for_update=True)
                assert user is not None
                await service.set_password(session, user, password_hash)
            # Every other session ends with the version bump; this one carries on, with the
            # lifetime it had.
            keep_current_session(user)
            await flash("Your password has been updated!", "success")
            return redirect(url_for("accounts.account"))
    return await render_template("reset/change.html", title="Change Password", form=form)


def keep_current_session(user: User) -> None:
    settings = resources().settings
    parsed = parse_auth_id(current_user.auth_id)
    remaining = parsed[2] - int(time.time()) if parsed else settings.SESSION_LIFETIME
    login_user(
        AccountUser(make_auth_id(user, lifetime=max(60, remaining))),
        remember=remaining > settings.SESSION_LIFETIME,
    )


@blueprint.route("/account/not-me/<token>", methods=["GET", "POST"])
async def not_me(token: str) -> ResponseReturnValue:
    """The "this wasn't me" link from a password-changed email: after one confirming click,
    end every session of the account and email a fresh reset link."""
    settings = resources().settings
    payload = tokens().loads(Purpose.NOT_ME, token, max_age=settings.NOT_ME_TOKEN_MAX_AGE)
    user_id = int_field(payload, "uid") if payload else None
    version = int_field(payload, "sv") if payload else None
    form = await ActionForm.from_request()
    if request.method == "GET":
        return await render_template("reset/not_me.html", title="Secure your account", form=form)
    form.validate_on_submit()
    done = False
    if user_id is not None and version is not None:
        async with transaction() as session:
            user = await session.get(User, user_id, with_for_update=True)
            if user is not None and user.session_version == version:
                await service.disown_change(session, user)
                done = True
    if not done:
        await flash(INVALID_TOKEN, "warning")
        return redirect(url_for("reset.request_reset"))
    logout_user()
    await flash(
        "Every session of your account has been ended. We sent you an email with a link "
        "to set a new password.",
        "info",
    )
    return redirect(url_for("accounts.login"))
