"""Where you are signed in: the list, ending one sign-in, and "sign out everywhere else"; the
browsers you asked to remember, and forgetting one."""

from __future__ import annotations

from quart import Blueprint, redirect, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared.i18n import gettext as _
from shared.i18n import ngettext
from shared.services import sessions, signin, trusted_browsers
from web.auth import current_sign_in, device_cookie, end_session
from web.extensions import services
from web.flashes import flash
from web.forms import ActionForm
from web.templating import render_template

blueprint = Blueprint("sessions", __name__)


@blueprint.get("/account/sessions")
@login_required
async def list_sessions() -> ResponseReturnValue:
    current = await current_sign_in()
    assert current is not None
    return await render_template(
        "accounts/sessions.html",
        title=_("Where you are signed in"),
        records=await sessions.active(services(), current.user.id),
        this=current.session.id,
        trusted=await trusted_browsers.listed(services(), current.user.id),
        this_browser=signin.device_id(services(), device_cookie()),
        form=await ActionForm.from_request(),
    )


@blueprint.post("/account/trusted-browsers/<int:browser_id>/forget")
@login_required
async def forget_browser(browser_id: int) -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    current = await current_sign_in()
    assert current is not None
    if await trusted_browsers.end(services(), current.user.id, browser_id):
        await flash("That browser is forgotten: signing in there takes both steps again.", "info")
    else:
        await flash("That browser was not remembered any more.", "warning")
    return redirect(url_for("sessions.list_sessions"))


@blueprint.post("/account/sessions/<public_id>/revoke")
@login_required
async def revoke(public_id: str) -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    current = await current_sign_in()
    assert current is not None
    if public_id == current.session.public_id:
        await end_session()
        await flash("You have been signed out on this device.", "info")
        return redirect(url_for("accounts.login"))
    if await sessions.revoke(services(), current.user.id, public_id, by=current.session.id):
        await flash("That session has been ended: it is signed out on its next request.", "info")
    else:
        await flash("That session had already ended.", "warning")
    return redirect(url_for("sessions.list_sessions"))


@blueprint.post("/account/sessions/revoke-others")
@login_required
async def revoke_others() -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()
    current = await current_sign_in()
    assert current is not None
    ended = await sessions.revoke_others(services(), current.user.id, keep=current.session.id)
    said = ngettext(
        "Signed out everywhere else (%(num)d session ended).",
        "Signed out everywhere else (%(num)d sessions ended).",
        ended,
    ) % {"num": ended}
    await flash(said, "info")
    return redirect(url_for("sessions.list_sessions"))
