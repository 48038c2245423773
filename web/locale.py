"""Which language and time zone a request is answered in, and the menu that changes them.

Pages: the signed-in account's language; else the ``lang`` cookie (the language menu, or an
application's ``ui_locales``); else the browser's ``Accept-Language``; else the first of
``LANGUAGES``. The API follows ``Accept-Language`` only: a client states it per request.
Times are shown in the account's zone, else the browser's (``site.js`` keeps it in the ``tz``
cookie), else UTC.
"""

from __future__ import annotations

from quart import Blueprint, after_this_request, redirect, request
from quart.typing import ResponseReturnValue, ResponseTypes

from shared import i18n
from shared.services import preferences
from web.auth import current_account
from web.extensions import services
from web.forms import CSRFForm
from web.security import safe_next

LANG_COOKIE = "lang"
ZONE_COOKIE = "tz"
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600

blueprint = Blueprint("locale", __name__)


def _available() -> list[str]:
    return services().settings.LANGUAGES


def from_header() -> str:
    """The best of the shipped languages for this request's ``Accept-Language``."""
    available = _available()
    wanted = [value for value, _quality in request.accept_languages]
    return i18n.negotiate(wanted, available) or available[0]


# Requests that show no page (files, probes, machine-to-machine endpoints): the header is
# enough, and the sign-in record is not looked up for them (a stylesheet must not cost a
# database round trip).
NO_PAGE = ("/api/", "/static/", "/favicon.ico", "/healthz", "/readyz", "/.well-known/",
           "/oauth/token", "/oauth/introspect", "/oauth/revoke", "/oauth/userinfo",
           "/oauth/register", "/hooks/")  # fmt: skip


async def choose() -> None:
    """The before-request hook: set this request's language and time zone."""
    available = _available()
    if request.path.startswith(NO_PAGE):
        i18n.set_locale(from_header(), "UTC")
        return
    account = await current_account() if request.cookies else None
    zone = i18n.valid_zone(request.cookies.get(ZONE_COOKIE)) or "UTC"
    if account is not None:
        zone = i18n.valid_zone(account.time_zone) or zone
        if account.language in available:
            i18n.set_locale(account.language, zone)
            return
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in available:
        i18n.set_locale(cookie, zone)
        return
    i18n.set_locale(from_header(), zone)


def prefer(locales: list[str]) -> None:
    """An application's ``ui_locales``: this browser's pages speak the first of them we
    have, for this visit (a browser-session cookie), unless the person chose already."""
    if request.cookies.get(LANG_COOKIE):
        return
    chosen = i18n.negotiate(locales, _available())
    if chosen is None:
        return
    i18n.set_locale(chosen)

    @after_this_request
    async def remember(response: ResponseTypes) -> ResponseTypes:
        remember_language(response, chosen, max_age=None)  # this visit only
        return response


def remember_language(
    response: ResponseTypes, language: str, *, max_age: int | None = LANG_COOKIE_MAX_AGE
) -> None:
    """The ``lang`` cookie: this browser's pages speak ``language`` from now on."""
    response.set_cookie(
        LANG_COOKIE,
        language,
        max_age=max_age,
        httponly=True,
        samesite="Lax",
        secure=services().settings.secure_cookies,
    )


def language_menu() -> list[tuple[str, str]]:
    """(code, name in its own language) of each language a person may choose."""
    return [(code, i18n.name_of(code)) for code in _available()]


@blueprint.post("/language")
async def choose_language() -> ResponseReturnValue:
    """The language menu at the foot of every page: a cookie for this browser, and the
    account's setting when signed in (so the emails follow too)."""
    form = await CSRFForm.from_request()
    form.validate_on_submit()  # only the CSRF token: a bad one is a 400 page
    data = await request.form
    chosen = data.get("language", "")
    target = safe_next(data.get("next"))
    if chosen not in _available():
        return redirect(target)
    account = await current_account()
    if account is not None:
        await preferences.change(services(), account.id, language=chosen)
    response = redirect(target)
    remember_language(response, chosen)
    return response
