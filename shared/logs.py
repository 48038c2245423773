"""One log format for every process, and a filter that keeps secrets out of it.

Email links carry tokens in their paths (``/confirm/<token>``, ``/reset_password/<token>``,
``/account/not-me/<token>``); access logs and error messages would otherwise write them
down. The filter rewrites every record's final message before any handler sees it.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from shared.settings import Settings, SettingsError, load_settings

SECRET_PATHS = re.compile(r"(/(?:confirm|reset_password|account/not-me)/)(?!resend\b)[^\s\"'?#<>]+")
SECRET_FIELDS = re.compile(
    r"((?:password|current_password|confirm_password|csrf_token|token)=)[^&\s\"']+"
)


def redact(text: str) -> str:
    return SECRET_FIELDS.sub(r"\1[redacted]", SECRET_PATHS.sub(r"\1[redacted]", text))


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())


def start_process() -> Settings | None:
    """What every entry point does first: read the settings (printing one line per problem,
    never a traceback, and returning None if they are bad) and set up logging."""
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"configuration error:\n{error}", file=sys.stderr)
        return None
    configure_logging(settings.LOG_LEVEL)
    return settings
