"""Typed settings read from the environment, on pydantic-settings.

Mail settings keep the names people already know from Flask-Mail (``MAIL_SERVER``,
``MAIL_USE_TLS``, ...). Every secret (and any other setting) can instead come from a file
named by ``<NAME>_FILE``, the convention of Docker and Kubernetes secrets:
``SECRET_KEY_FILE=/run/secrets/secret_key``. Every process calls :func:`load_settings` once at
start-up; a missing or malformed value raises :class:`SettingsError`, whose message is one line
per bad variable, so the entry points can print it and exit without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError

from shared.settings.model import Settings
from shared.settings.sources import ENVIRON, SettingsError, describe

__all__ = ["Settings", "SettingsError", "load_settings"]


@contextmanager
def reading(environ: Mapping[str, str] | None) -> Iterator[None]:
    token = ENVIRON.set(environ)
    try:
        yield
    finally:
        ENVIRON.reset(token)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``environ`` (default: ``os.environ``) plus explicit overrides.

    Raises :class:`SettingsError` with one line per problem, each naming the variable.
    """
    try:
        with reading(environ):
            return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(describe(error)) from None
