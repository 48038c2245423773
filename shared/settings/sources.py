"""Where settings come from: the environment (or a given mapping), and ``NAME_FILE`` files;
and how a refusal is told (:class:`SettingsError`, one line per problem)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
)


class SettingsError(Exception):
    """Raised when the environment does not describe a runnable configuration."""


ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("settings_environ", default=None)


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (tests, ``devstack``) or,
    by default, ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None):
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(os.environ if self._environ is None else self._environ)


class FileValueSource(PydanticBaseSettingsSource):
    """``NAME_FILE=/path``: the value of ``NAME`` is that file's content (one trailing
    newline removed), as Docker and Kubernetes mount secrets."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None):
        super().__init__(settings_cls)
        self._environ = os.environ if environ is None else environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = self._environ.get(f"{field_name}_FILE")
        if not path:
            return None, field_name, False
        if self._environ.get(field_name):
            raise SettingsError(f"set {field_name} or {field_name}_FILE, not both")
        try:
            value = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise SettingsError(f"{field_name}_FILE {path!r} cannot be read: {reason}") from None
        return value.removesuffix("\n").removesuffix("\r"), field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, name)
            if value is not None:
                values[name] = value
        return values


def describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]) or "settings"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            message = "is required but not set"
        elif name != "settings":
            message = message[0].lower() + message[1:] if message else message
        lines.append(f"{name} {message}" if name != "settings" else message)
    return "\n".join(lines)
