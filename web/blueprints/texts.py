"""Writing Texts (the seed's ``Texts`` model): logged-in users with a confirmed address."""

from __future__ import annotations

from quart import Blueprint, flash, redirect, render_template, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared.models import User
from shared.services.accounts import create_text
from web.auth import current_account
from web.extensions import transaction
from web.forms import TextForm

blueprint = Blueprint("texts", __name__)


@blueprint.route("/texts/new", methods=["GET", "POST"])
@login_required
async def new_text() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    if user.confirmed_at is None:
        await flash("Please confirm your email address before writing texts.", "warning")
        return redirect(url_for("accounts.account"))
    form = await TextForm.from_request()
    if form.validate_on_submit():
        async with transaction() as session:
            author = await session.get(User, user.id)
            assert author is not None
            await create_text(session, author, form.title.data or "", form.content.data or "")
        await flash("Your text has been published.", "success")
        return redirect(url_for("main.home"))
    return await render_template("texts/new.html", title="New text", form=form)
