"""Two-factor sign-in (HTML): the second step of signing in, enrolling an authenticator
app, recovery codes, turning it off."""

from __future__ import annotations

from quart import Blueprint, redirect, session, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared.i18n import gettext as _
from shared.services import two_factor
from shared.services.refusals import NotApplicable, WrongCode
from web.auth import (
    SECOND_STEP,
    continue_session,
    current_account,
    current_session_id,
    sign_in_attempt,
    start_session,
)
from web.extensions import services
from web.flashes import flash
from web.forms import ActionForm, EnrolmentForm, SecondStepForm
from web.ratelimit import limit_posts
from web.reauth import fresh_authentication
from web.security import safe_next
from web.templating import render_template

blueprint = Blueprint("two_factor", __name__)


def remember_second_step(pending: str, *, remember: bool, next_url: str) -> None:
    """The password was right: keep what the second step needs (signed, short-lived)."""
    session[SECOND_STEP] = {"pending": pending, "remember": remember, "next": next_url}


@blueprint.route("/login/two-factor", methods=["GET", "POST"])
@limit_posts("login")
async def second_step() -> ResponseReturnValue:
    state = session.get(SECOND_STEP)
    if not isinstance(state, dict) or not isinstance(state.get("pending"), str):
        await flash("Please sign in first.", "info")
        return redirect(url_for("accounts.login"))
    form = await SecondStepForm.from_request()
    if form.validate_on_submit():
        try:
            result = await two_factor.complete_sign_in(
                services(),
                state["pending"],
                form.code.data,
                sign_in_attempt(
                    remember=bool(state.get("remember")), trust=bool(form.trust_browser.data)
                ),
            )
        except NotApplicable as lapsed:
            session.pop(SECOND_STEP, None)
            await flash(lapsed.message, "warning")
            return redirect(url_for("accounts.login"))
        except WrongCode as refusal:
            form.show(refusal)
        else:
            assert result.user is not None
            await start_session(
                result.session_id,
                remember=bool(state.get("remember")),
                device_cookie=result.device_cookie,
            )
            return redirect(safe_next(state.get("next")))
    return await render_template(
        "accounts/second_step.html",
        title=_("Two-factor sign-in"),
        form=form,
        next_url=safe_next(state.get("next")),
        trust_days=services().settings.TRUSTED_BROWSER_DAYS,
        has_passkey=await two_factor.pending_has_passkey(services(), state["pending"]),
    )


@blueprint.route("/account/two-factor", methods=["GET", "POST"])
@login_required
@fresh_authentication
async def settings() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    context = services()
    state = await two_factor.status(context, user.id)
    if state.enabled:
        return await render_template(
            "accounts/two_factor.html",
            title=_("Two-factor sign-in"),
            status=state,
            form=await ActionForm.from_request(),
        )
    form = await EnrolmentForm.from_request()
    if form.validate_on_submit():
        try:
            result = await two_factor.confirm_enrolment(
                context, user.id, form.code.data, sign_in=current_session_id()
            )
        except WrongCode as refusal:
            form.show(refusal)
        else:
            await continue_session(result.session_id)
            return await render_template(
                "accounts/recovery_codes.html",
                title=_("Your recovery codes"),
                codes=result.recovery_codes,
                just_enabled=True,
            )
    enrolment = await two_factor.begin_enrolment(context, user.id)
    return await render_template(
        "accounts/two_factor.html",
        title=_("Two-factor sign-in"),
        status=state,
        enrolment=enrolment,
        form=form,
    )


@blueprint.post("/account/two-factor/recovery-codes")
@login_required
async def regenerate() -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    user = await current_account()
    assert user is not None
    try:
        result = await two_factor.regenerate_codes(
            services(), user.id, sign_in=current_session_id()
        )
    except NotApplicable as refusal:
        await flash(refusal.message, "warning")
        return redirect(url_for("two_factor.settings"))
    return await render_template(
        "accounts/recovery_codes.html",
        title=_("Your recovery codes"),
        codes=result.recovery_codes,
        just_enabled=False,
    )


@blueprint.post("/account/two-factor/disable")
@login_required
async def disable() -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()
    user = await current_account()
    assert user is not None
    try:
        result = await two_factor.disable(services(), user.id, sign_in=current_session_id())
    except NotApplicable as refusal:
        await flash(refusal.message, "warning")
        return redirect(url_for("two_factor.settings"))
    await continue_session(result.session_id)
    await flash("Two-factor sign-in is off.", "info")
    return redirect(url_for("accounts.account"))
