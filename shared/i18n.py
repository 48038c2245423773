"""Languages: the catalogs, the current locale, and dates in a person's language and zone.

One catalog per language (``shared/locales/<lang>/LC_MESSAGES/messages.po``) holds every
string of the pages, the emails, the flashes and the API's problems; the English text is the
message id, so English needs no catalog. The ``.po`` files are read and compiled in memory
the first time a language is used (a few milliseconds), so there is no build step and no
compiled file to forget.

The locale is a context variable: the web sets it per request (``web.locale``), the worker
per message (the recipient's language, ``worker.mail.render``). :func:`gettext` reads it, so
code that runs in either (a use case's refusal, a rule's message) translates to whoever it is
talking to. Messages defined at import time are marked with :func:`N_` and translated where
they are shown (a flash, a form error, a problem's detail), by :func:`gettext` again: a
string that is not a message id comes back as it was, so translating twice is harmless.
"""

from __future__ import annotations

import functools
import io
import re
import zoneinfo
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from gettext import NullTranslations
from pathlib import Path
from typing import Any

import babel.dates
from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import LazyProxy, Translations

LOCALES_DIR = Path(__file__).parent / "locales"
DEFAULT = "en"
# The languages this service ships, in the order a language menu lists them.
SHIPPED = ("en", "de", "fr", "es", "pl", "ar")
NAMES = {
    "en": "English",
    "de": "Deutsch",
    "fr": "Français",
    "es": "Español",
    "pl": "Polski",
    "ar": "العربية",
}
_RTL = frozenset({"ar", "fa", "he", "ur", "yi", "ps", "dv", "ckb"})

# A language tag as LANGUAGES and the API take it: "de", "pt-BR", the pseudo-locale "en-XA".
LANGUAGE_TAG = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"

_locale: ContextVar[str] = ContextVar("locale", default=DEFAULT)
_zone: ContextVar[str] = ContextVar("time_zone", default="UTC")
_directory: Path = LOCALES_DIR


def N_(message: str) -> str:
    """Mark a message for the catalogs; it is translated where it is shown."""
    return message


def N_plural(singular: str, plural: str) -> tuple[str, str]:
    """Mark a singular and plural pair for the catalogs (one entry with plural forms); pass
    both to :func:`ngettext` where it is shown."""
    return singular, plural


def catalog_path(directory: Path, locale: str) -> Path:
    """Where ``locale``'s catalog is under ``directory`` (gettext's layout: pt-BR in pt_BR)."""
    return directory / locale.replace("-", "_") / "LC_MESSAGES" / "messages.po"


def languages_problem(languages: Sequence[str], directory: Path | None) -> str | None:
    """What is wrong with a LANGUAGES setting, if anything: a tag that is not one, or a
    language without a catalog (the source language needs none)."""
    if not languages:
        return "LANGUAGES: name at least one language, e.g. en"
    for code in languages:
        if not re.fullmatch(LANGUAGE_TAG, code):
            return f"LANGUAGES: {code!r} is not a language tag like de or pt-BR"
        catalog = catalog_path(directory or LOCALES_DIR, code)
        if code != DEFAULT and not catalog.exists():
            return f"LANGUAGES: {code} has no catalog ({catalog} is missing)"
    return None


def configure(directory: Path | None) -> None:
    """Where the catalogs are (a test's pseudo-locale lives in a directory of its own)."""
    global _directory
    _directory = directory or LOCALES_DIR
    _translations.cache_clear()


@functools.cache
def _translations(locale: str) -> NullTranslations:
    path = catalog_path(_directory, locale)
    if locale == DEFAULT or not path.exists():
        return NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=babel_locale(locale))
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out, as msgfmt does
    compiled.seek(0)
    return Translations(compiled)


def gettext(message: str) -> str:
    return _translations(_locale.get()).gettext(message)


def ngettext(singular: str, plural: str, number: int) -> str:
    return _translations(_locale.get()).ngettext(singular, plural, number)


def pgettext(context: str, message: str) -> str:
    return _translations(_locale.get()).pgettext(context, message)


def lazy_gettext(message: str) -> Any:
    """``message`` translated each time it is turned into text, in the locale of that
    moment: for what is defined once and shown to many (a form's labels)."""
    return LazyProxy(gettext, message, enable_cache=False)


def current() -> str:
    return _locale.get()


def current_zone() -> str:
    return _zone.get()


def set_locale(locale: str, zone: str | None = None) -> None:
    """For the rest of this task (a request; the web's before-request hook calls it)."""
    _locale.set(locale)
    if zone is not None:
        _zone.set(zone)


@contextmanager
def use(locale: str | None, zone: str | None = None) -> Iterator[None]:
    """Speak ``locale`` (and show times in ``zone``) inside the block."""
    token = _locale.set(locale or DEFAULT)
    zone_token = _zone.set(zone) if zone else None
    try:
        yield
    finally:
        _locale.reset(token)
        if zone_token is not None:
            _zone.reset(zone_token)


def direction(locale: str | None = None) -> str:
    return "rtl" if (locale or _locale.get()).split("-")[0] in _RTL else "ltr"


@functools.cache
def babel_locale(locale: str) -> Locale:
    """Babel's data for ``locale`` (plural rules, date formats); English for a code Babel
    does not know (a test's pseudo-locale)."""
    try:
        return Locale.parse(locale, sep="-")
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT)


def negotiate(preferred: Sequence[str], available: Sequence[str]) -> str | None:
    """The first of ``preferred`` (most wanted first, e.g. ``ui_locales``) that ``available``
    has, matching a regional variant to its language (``de-AT`` → ``de``)."""
    lowered = {code.lower(): code for code in available}
    for wanted in preferred:
        tag = wanted.strip().replace("_", "-").lower()
        while tag:
            if tag in lowered:
                return lowered[tag]
            tag = tag.rpartition("-")[0]
    return None


def name_of(locale: str) -> str:
    """A language's name in that language, for the language menu."""
    if locale in NAMES:
        return NAMES[locale]
    return str(babel_locale(locale).display_name or locale)


# --- time zones ------------------------------------------------------------------------------
@functools.cache
def time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def valid_zone(name: str | None) -> str | None:
    """``name`` if it is an IANA time zone this machine knows, else None."""
    if name and len(name) <= 64 and name in time_zones():
        return name
    return None


@functools.cache
def _zone_info(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


# --- dates, in the current language and zone -----------------------------------------------------
def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def format_datetime(value: datetime, format: str = "medium") -> str:
    """A moment as the person reads it: their language's format, their time zone's clock,
    and the zone's name, so that nobody has to guess."""
    return babel.dates.format_datetime(
        _aware(value),
        format=format,
        tzinfo=_zone_info(_zone.get()),
        locale=babel_locale(_locale.get()),
    )


def format_date(value: datetime, format: str = "medium") -> str:
    local = _aware(value).astimezone(_zone_info(_zone.get()))
    return babel.dates.format_date(local.date(), format=format, locale=babel_locale(_locale.get()))


def format_relative(value: datetime, now: datetime | None = None) -> str:
    """ "3 hours ago", "in 2 days": how long from now, in words of the person's language."""
    delta: timedelta = _aware(value) - (now or datetime.now(UTC))
    return babel.dates.format_timedelta(
        delta, add_direction=True, threshold=1.0, locale=babel_locale(_locale.get())
    )


def format_duration(seconds: float) -> str:
    """How long, in words ("30 seconds", "5 minutes", "24 hours"), rounded to the unit."""
    return babel.dates.format_timedelta(
        timedelta(seconds=seconds), threshold=1.5, locale=babel_locale(_locale.get())
    )


def zone_label() -> str:
    """The current zone as a person knows it ("Central European Time", "UTC")."""
    name = _zone.get()
    if name == "UTC":
        return "UTC"
    return babel.dates.get_timezone_name(
        _zone_info(name), width="long", locale=babel_locale(_locale.get())
    )
