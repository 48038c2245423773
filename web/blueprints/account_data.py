"""Your data: download everything stored about your account, or delete the account."""

from __future__ import annotations

import json

from quart import Blueprint, Response, redirect, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared.i18n import gettext as _
from shared.services import account_data
from shared.services.refusals import WrongConfirmation
from web.auth import current_account, current_session_id, end_session
from web.extensions import services
from web.flashes import flash
from web.forms import DeleteAccountForm
from web.reauth import fresh_authentication
from web.templating import render_template

blueprint = Blueprint("account_data", __name__)


@blueprint.get("/account/export")
@login_required
@fresh_authentication
async def export() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    data = await account_data.export_account(services(), user.id, sign_in=current_session_id())
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        content_type="application/json; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="account-{user.id}.json"'},
    )


@blueprint.route("/account/delete", methods=["GET", "POST"])
@login_required
@fresh_authentication
async def delete() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    form = await DeleteAccountForm.from_request()
    if form.validate_on_submit():
        try:
            await account_data.delete_account(
                services(), user.id, "", form.confirm_username.data, sign_in=current_session_id()
            )
        except WrongConfirmation as refusal:
            form.show(refusal)
        else:
            await end_session()
            await flash("Your account has been deleted. Goodbye!", "info")
            return redirect(url_for("main.home"))
    return await render_template(
        "accounts/delete.html", title=_("Delete your account"), form=form, user=user
    )
