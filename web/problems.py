"""RFC 9457 problem details: how the JSON API reports every error."""

from __future__ import annotations

import json

from pydantic import BaseModel
from quart import Response

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
    body = Problem(type=problem_type, title=title, status=status, detail=detail, errors=errors)
    response = Response(
        json.dumps(body.model_dump(exclude_none=True)),
        status=status,
        content_type="application/problem+json",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
