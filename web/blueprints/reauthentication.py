"""Re-authentication (HTML): "confirm it is you" before a sensitive change, with whichever
methods the account has (password, authenticator or recovery code, a passkey through
/static/passkeys.js and the API, a code by email), then back to where the person was headed
(``next``). Each method's form posts to its own address; a refusal shows the page again
with the error under that form."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, redirect, request, session, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared.i18n import gettext as _
from shared.services import login_codes, proof, reauthentication
from shared.services.refusals import CodeSpent, WrongCode, WrongPassword
from shared.validation import InvalidInput
from web.auth import current_sign_in, device_cookie, sign_in_attempt
from web.extensions import services
from web.flashes import flash
from web.forms import ActionForm, CodeForm, LoginCodeForm, PasswordForm
from web.ratelimit import limit_posts
from web.security import safe_next
from web.templating import render_template

blueprint = Blueprint("reauthentication", __name__)

EMAILED = "reauthentication_code"  # in the session cookie: a code was emailed for this


def _next() -> str:
    return safe_next(request.args.get("next"), "/account")


async def _page(**forms: Any) -> ResponseReturnValue:
    current = await current_sign_in()
    assert current is not None
    return await render_template(
        "accounts/reauthenticate.html",
        title=_("Confirm it is you"),
        methods=await reauthentication.methods(services(), current.user.id),
        password_form=forms.get("password_form") or PasswordForm.blank(),
        code_form=forms.get("code_form") or CodeForm.blank(),
        email_form=forms.get("email_form") or LoginCodeForm.blank(),
        action=ActionForm.blank(),
        emailed=bool(session.get(EMAILED)),
        next_url=_next(),
    )


async def _done() -> ResponseReturnValue:
    session.pop(EMAILED, None)
    return redirect(_next())


@blueprint.get("/account/reauthenticate")
@login_required
async def reauthenticate() -> ResponseReturnValue:
    return await _page()


@blueprint.post("/account/reauthenticate/password")
@login_required
@limit_posts("login")
async def with_password() -> ResponseReturnValue:
    form = await PasswordForm.from_request()
    if form.validate_on_submit():
        current = await current_sign_in()
        assert current is not None
        offered = proof.Proof(password=form.password.data)
        try:
            await reauthentication.with_typed(
                services(), current.user.id, current.session.id, offered
            )
        except WrongPassword as wrong:
            form.show(wrong)
        else:
            return await _done()
    return await _page(password_form=form)


@blueprint.post("/account/reauthenticate/code")
@login_required
@limit_posts("login")
async def with_code() -> ResponseReturnValue:
    form = await CodeForm.from_request()
    if form.validate_on_submit():
        current = await current_sign_in()
        assert current is not None
        offered = proof.Proof(code=form.code.data, field="code")
        try:
            await reauthentication.with_typed(
                services(), current.user.id, current.session.id, offered
            )
        except (WrongCode, InvalidInput) as wrong:
            form.show(wrong)
        else:
            return await _done()
    return await _page(code_form=form)


@blueprint.post("/account/reauthenticate/email")
@login_required
@limit_posts("login")
async def send_code() -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    current = await current_sign_in()
    assert current is not None
    await login_codes.request_for_account(
        services(), current.user.id, device_cookie=device_cookie()
    )
    session[EMAILED] = True
    await flash("A code is on its way to your email address.", "info")
    return redirect(url_for("reauthentication.reauthenticate", next=_next()))


@blueprint.post("/account/reauthenticate/email-code")
@login_required
@limit_posts("login")
async def with_email_code() -> ResponseReturnValue:
    form = await LoginCodeForm.from_request()
    if form.validate_on_submit():
        current = await current_sign_in()
        assert current is not None
        try:
            await login_codes.reauthenticate(
                services(),
                current.user.id,
                current.session.id,
                form.code.data,
                sign_in_attempt(remember=False),
            )
        except WrongCode as wrong:
            form.show(wrong)
        except CodeSpent as spent:
            session.pop(EMAILED, None)
            await flash(spent.message, "warning")
            return redirect(url_for("reauthentication.reauthenticate", next=_next()))
        else:
            return await _done()
    return await _page(email_form=form)
