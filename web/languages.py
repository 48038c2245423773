"""The pages' side of :mod:`shared.i18n`: Jinja's i18n extension over the current locale,
each request's language chosen before its handler runs, and every answer saying it."""

from __future__ import annotations

from datetime import datetime

from quart import Quart, Response

from shared import i18n
from shared.outages import is_unavailable
from web import locale


def install(app: Quart) -> None:
    env = app.jinja_env
    env.add_extension("jinja2.ext.i18n")
    # {% trans %} blocks become one line each ("trimmed"), as the catalogs hold them.
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(  # type: ignore[attr-defined]  # added by the extension
        i18n.gettext, i18n.ngettext, newstyle=True, pgettext=i18n.pgettext
    )
    # A message made elsewhere (a flash, a form error), translated if it is a catalog's
    # message id; a plain string, escaped like any value (``_()`` would mark it safe).
    env.filters["tr"] = i18n.gettext
    env.filters["datetime"] = _datetime
    env.filters["date"] = _date
    env.filters["relative"] = _relative
    env.globals["language_menu"] = locale.language_menu
    # A call, not a value: only the two pages that name the zone pay for its name.
    env.globals["time_zone"] = i18n.zone_label

    @app.before_request
    async def choose_language() -> None:
        try:
            await locale.choose()
        except Exception as error:
            if not is_unavailable(error):  # the 503 page is still answered, in English
                raise
            i18n.set_locale(locale.from_header(), "UTC")

    @app.context_processor
    async def language_context() -> dict[str, object]:
        return {
            "lang": i18n.current(),
            "text_direction": i18n.direction(),
        }

    @app.after_request
    async def say_language(response: Response) -> Response:
        response.headers.setdefault("Content-Language", i18n.current())
        vary = response.headers.get("Vary", "")
        if "accept-language" not in vary.lower():
            response.headers["Vary"] = f"{vary}, Accept-Language" if vary else "Accept-Language"
        return response


def _datetime(value: datetime | None, format: str = "medium") -> str:
    return "" if value is None else i18n.format_datetime(value, format)


def _date(value: datetime | None, format: str = "medium") -> str:
    return "" if value is None else i18n.format_date(value, format)


def _relative(value: datetime | None) -> str:
    return "" if value is None else i18n.format_relative(value)
