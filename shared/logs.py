"""One log format for every process, and a filter that keeps secrets out of it.

Email links carry tokens in their paths (``/confirm/<token>``, ``/reset_password/<token>``,
``/account/not-me/<token>``); access logs and error messages would otherwise write them
down. The filter rewrites every record's final message before any handler sees it.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
import sys
from typing import Any

from shared import links
from shared.settings import Settings, SettingsError, load_settings

SECRET_PATHS = links.token_paths()
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


class QuietCron(logging.Filter):
    """arq logs every job's start and end at INFO: for the periodic sweeps (``cron:...``,
    every few seconds whether or not there is anything to sweep) that was ten lines a minute
    of nothing, scrolling away what matters. Their warnings and errors still show, and so
    does every job a request caused."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not isinstance(record.args, tuple):
            return True
        return not any(isinstance(arg, str) and arg.startswith("cron:") for arg in record.args)


def logging_config(level: str | None = None) -> dict[str, Any]:
    """The one logging set-up, as a ``dictConfig`` mapping: each process applies it, and
    ``python -m web`` hands it to uvicorn, whose server processes apply it when they start.
    Everything goes through the root handler and its secret-redacting filter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets}, "quiet_cron": {"()": QuietCron}},
        "formatters": {
            "line": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            },
        },
        "root": {
            "level": (level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
            "handlers": ["stderr"],
        },
        # uvicorn's own loggers carry handlers of their own unless told to propagate.
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            "arq.worker": {"filters": ["quiet_cron"]},
        },
    }


def configure_logging(level: str | None = None) -> None:
    logging.config.dictConfig(logging_config(level))


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
