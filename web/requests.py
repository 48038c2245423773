"""The request class: JSON bodies that are not UTF-8, or are nested past the parser's
recursion limit, are a 400 like any other malformed JSON, never a server error."""

from __future__ import annotations

from typing import Any

from quart import Request as QuartRequest
from werkzeug.exceptions import BadRequest


class Request(QuartRequest):
    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            return await super().get_json(force=force, silent=silent, cache=cache)
        except (UnicodeDecodeError, RecursionError):
            if silent:
                return None
            raise BadRequest("The body is not valid JSON (UTF-8, not nested too deeply).") from None
