""" "Apps with access": the applications you let sign you in through this service, what each
may read, when it last used its access, and removing it."""

from __future__ import annotations

from quart import Blueprint, redirect, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared.i18n import gettext as _
from shared.services.identity import apps
from web.auth import current_sign_in
from web.extensions import services
from web.flashes import flash
from web.forms import ActionForm
from web.templating import render_template

blueprint = Blueprint("apps", __name__)


@blueprint.get("/account/apps")
@login_required
async def list_apps() -> ResponseReturnValue:
    current = await current_sign_in()
    assert current is not None
    return await render_template(
        "identity/apps.html",
        title=_("Apps with access"),
        apps=await apps.listed(services(), current.user.id),
        form=await ActionForm.from_request(),
    )


@blueprint.post("/account/apps/<client_id>/remove")
@login_required
async def remove(client_id: str) -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    current = await current_sign_in()
    assert current is not None
    if await apps.remove(services(), current.user.id, client_id[:64]):
        await flash("Its access is removed: it must ask you again to sign you in.", "info")
    else:
        await flash("That application had no access any more.", "warning")
    return redirect(url_for("apps.list_apps"))
