"""RFC 9457 problem details: how the JSON API reports every error."""

from __future__ import annotations

import json

from pydantic import BaseModel
from quart import Response

from shared import i18n

PROBLEM_TYPE = "about:blank"  # RFC 9457: the title is the HTTP status phrase's meaning


class Problem(BaseModel):
    type: str = PROBLEM_TYPE
    title: str
    status: int
    detail: str
    errors: dict[str, list[str]] | None = None


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
    problem_type: str = PROBLEM_TYPE,
) -> Response:
    # Titles and details are message ids where they are fixed (shared.i18n.N_): they go out
    # in the request's language (Accept-Language), as every field error does.
    if errors is not None:
        errors = {name: [i18n.gettext(text) for text in texts] for name, texts in errors.items()}
    body = Problem(
        type=problem_type,
        title=i18n.gettext(title),
        status=status,
        detail=i18n.gettext(detail),
        errors=errors,
    )
    response = Response(
        json.dumps(body.model_dump(exclude_none=True)),
        status=status,
        content_type="application/problem+json",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
