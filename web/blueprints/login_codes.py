"""Signing in with a code from your email (HTML): ask for it, type it, or follow the link in
the browser that asked. The browser that asks keeps, in its signed session cookie, the
address, when it asked, and the binding that makes the link work there at once."""

from __future__ import annotations

from quart import Blueprint, redirect, request, session, url_for
from quart.typing import ResponseReturnValue

from shared import links
from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import login_codes
from shared.services.refusals import CodeSpent, WrongCode
from web.auth import (
    LOGIN_CODE,
    code_request,
    code_request_expired,
    current_account,
    device_cookie,
    remember_code_request,
    sign_in_attempt,
    start_session,
)
from web.blueprints.two_factor import remember_second_step
from web.extensions import services
from web.flashes import flash
from web.forms import LoginCodeForm, LoginCodeRequestForm
from web.ratelimit import limit_posts
from web.security import safe_next
from web.templating import render_template

blueprint = Blueprint("login_codes", __name__)

EXPIRED = N_("That code has expired. Ask for a new one.")
ADDRESS_PROVEN_NOTICE = N_(
    "Your address is confirmed. The password this account was made with is not kept (nobody "
    "had proven the address when it was set): set one on your account page if you want one."
)


@blueprint.route("/login/code", methods=["GET", "POST"])
@limit_posts("login")
async def request_code() -> ResponseReturnValue:
    next_url = safe_next(request.args.get("next"))
    if await current_account() is not None:
        return redirect(next_url)
    form = await LoginCodeRequestForm.from_request()
    if form.validate_on_submit():
        binding = await login_codes.request(
            services(), form.email.data, device_cookie=device_cookie()
        )
        # The same answer for any address: whether it has an account is the email's business.
        remember_code_request(
            form.email.data, binding, remember=bool(form.remember.data), next_url=next_url
        )
        return redirect(url_for("login_codes.enter_code"))
    return await render_template(
        "accounts/login_code_request.html", title=_("Sign in with a code"), form=form
    )


@blueprint.route("/login/code/enter", methods=["GET", "POST"])
@limit_posts("login")
async def enter_code() -> ResponseReturnValue:
    state = code_request()
    if state is None:
        return redirect(url_for("login_codes.request_code"))
    form = await LoginCodeForm.from_request()
    if form.validate_on_submit():
        if code_request_expired(
            state
        ):  # said from the browser's own record: the same for any address
            await flash(EXPIRED, "warning")
            return redirect(url_for("login_codes.request_code"))
        remember = bool(state.get("remember"))
        try:
            result = await login_codes.with_code(
                services(), state["email"], form.code.data, sign_in_attempt(remember=remember)
            )
        except CodeSpent as spent:
            session.pop(LOGIN_CODE, None)
            await flash(spent.message, "warning")
            return redirect(url_for("login_codes.request_code"))
        except WrongCode as wrong:
            form.show(wrong)
        else:
            return await _signed_in(result, remember=remember, next_url=state.get("next"))
    return await render_template(
        "accounts/login_code_enter.html",
        title=_("Enter your code"),
        form=form,
        email=state["email"],
        action=url_for("login_codes.enter_code"),
    )


@blueprint.route(links.LOGIN_CODE.route, methods=["GET", "POST"])
@limit_posts("login")
async def follow_link(token: str) -> ResponseReturnValue:
    """The emailed link: in the browser that asked, it signs in; anywhere else (a phone's
    mail app, a mail scanner, someone the email was forwarded to) it asks for the code."""
    state = code_request()
    remember = bool(state.get("remember")) if state else False
    context = services()
    if request.method == "GET" and state is not None:
        binding = state.get("binding")
        result = await login_codes.with_link(
            context,
            token,
            binding if isinstance(binding, str) else "",
            sign_in_attempt(remember=remember),
        )
        if result is not None:
            return await _signed_in(result, remember=remember, next_url=state.get("next"))
    if not login_codes.link_works(context, token):
        await flash(EXPIRED, "warning")
        return redirect(url_for("login_codes.request_code"))
    form = await LoginCodeForm.from_request()
    if form.validate_on_submit():
        try:
            result = await login_codes.with_link_and_code(
                context, token, form.code.data, sign_in_attempt(remember=remember)
            )
        except CodeSpent as spent:
            await flash(spent.message, "warning")
            return redirect(url_for("login_codes.request_code"))
        except WrongCode as wrong:
            form.show(wrong)
        else:
            return await _signed_in(result, remember=remember, next_url=None)
    return await render_template(
        "accounts/login_code_enter.html",
        title=_("Enter your code"),
        form=form,
        email=None,
        action=request.path,
    )


async def _signed_in(
    result: login_codes.Result, *, remember: bool, next_url: object
) -> ResponseReturnValue:
    target = safe_next(next_url if isinstance(next_url, str) else None)
    if result.second_step is not None:
        remember_second_step(result.second_step, remember=remember, next_url=target)
        return redirect(url_for("two_factor.second_step"))
    await start_session(result.session_id, remember=remember, device_cookie=result.device_cookie)
    if result.password_dropped:  # after the session starts afresh, or it would be lost
        await flash(ADDRESS_PROVEN_NOTICE, "info")
    return redirect(target)
