"""Passkeys (HTML): the list with "Add a passkey" (the ceremony runs in
/static/passkeys.js against the JSON API) and removal; both need a recent authentication
(without one, the person confirms it is them first)."""

from __future__ import annotations

from quart import Blueprint, redirect, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared.i18n import gettext as _
from shared.services import passkeys
from shared.services.refusals import NotFound
from web.auth import continue_session, current_account, current_session_id
from web.extensions import services
from web.flashes import flash
from web.forms import ActionForm
from web.templating import render_template

blueprint = Blueprint("passkeys", __name__)


@blueprint.get("/account/passkeys")
@login_required
async def list_passkeys() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    return await render_template(
        "accounts/passkeys.html",
        title=_("Passkeys"),
        items=await passkeys.listed(services(), user.id),
        form=await ActionForm.from_request(),
    )


@blueprint.post("/account/passkeys/<int:passkey_id>/remove")
@login_required
async def remove(passkey_id: int) -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    try:
        result = await passkeys.remove(
            services(), user.id, passkey_id, sign_in=current_session_id()
        )
    except NotFound:
        await flash("That passkey had already been removed.", "warning")
    else:
        await continue_session(result.session_id)
        await flash("The passkey has been removed.", "info")
    return redirect(url_for("passkeys.list_passkeys"))
