"""Writing Texts: logged-in users with a confirmed address."""

from __future__ import annotations

from quart import Blueprint, redirect, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import texts
from web.auth import current_account
from web.extensions import services
from web.flashes import flash
from web.forms import TextForm
from web.templating import render_template

blueprint = Blueprint("texts", __name__)
CONFIRM_FIRST = N_("Please confirm your email address before writing texts.")


@blueprint.route("/texts/new", methods=["GET", "POST"])
@login_required
async def new_text() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    form = await TextForm.from_request()
    if form.validate_on_submit():
        try:
            await texts.create_text(services(), user.id, form.title.data, form.content.data)
        except texts.NotConfirmed:
            await flash(CONFIRM_FIRST, "warning")
            return redirect(url_for("accounts.account"))
        await flash("Your text has been published.", "success")
        return redirect(url_for("main.home"))
    return await render_template("texts/new.html", title=_("New text"), form=form)
