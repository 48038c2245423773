"""Account activity: the owner's security events, in words."""

from __future__ import annotations

from quart import Blueprint, request
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared.i18n import gettext as _
from shared.services import events
from web.auth import current_account
from web.extensions import services
from web.templating import render_template

blueprint = Blueprint("activity", __name__)


@blueprint.get("/account/activity")
@login_required
async def show() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    page = await events.activity(services(), user.id, request.args.get("page", 1, type=int) or 1)
    return await render_template(
        "accounts/activity.html", title=_("Account activity"), page=page, in_words=events.in_words
    )
