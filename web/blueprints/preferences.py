"""Language and time zone, on the account page (the foot of every page has the language
menu too: web.locale)."""

from __future__ import annotations

from quart import Blueprint, redirect, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required

from shared import i18n
from shared.services import preferences
from shared.validation import InvalidInput
from web.auth import current_account
from web.extensions import services
from web.flashes import flash
from web.forms import PreferencesForm
from web.locale import language_menu, remember_language
from web.templating import render_template

blueprint = Blueprint("preferences", __name__)
SAVED = i18n.N_("Saved: your language and time zone.")


@blueprint.route("/account/preferences", methods=["GET", "POST"])
@login_required
async def edit() -> ResponseReturnValue:
    user = await current_account()
    assert user is not None
    form = await PreferencesForm.from_request(
        language=user.language or i18n.current(),
        time_zone=user.time_zone or i18n.current_zone(),
    )
    form.language.choices = language_menu()
    form.time_zone.choices = sorted(i18n.time_zones())
    if form.validate_on_submit():
        try:
            chosen = await preferences.change(
                services(), user.id, language=form.language.data, time_zone=form.time_zone.data
            )
        except InvalidInput as error:
            form.show(error)
        else:
            i18n.set_locale(chosen.language or i18n.current(), chosen.time_zone)
            await flash(SAVED, "success")
            response = redirect(url_for("accounts.account"))
            if chosen.language:
                remember_language(response, chosen.language)
            return response
    return await render_template(
        "accounts/preferences.html", title=i18n.gettext("Language and time zone"), form=form
    )
