"""The OpenAPI description: the API only, errors as application/problem+json."""

from __future__ import annotations

from typing import Any

from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import Rule

from web.api.base import PREFIX, UNSAFE_METHODS
from web.problems import Problem

# The identity provider's JSON endpoints, which answer OAuth errors ({"error": ...}), not
# problems, and take forms, not JSON.
OAUTH_PATHS = (
    "/oauth/token", "/oauth/userinfo", "/oauth/introspect", "/oauth/revoke", "/oauth/register",
)  # fmt: skip


class ApiOnlyProvider(OpenAPIProvider):
    """The spec describes the API and the OAuth endpoints (not the HTML pages), and says that
    the API's errors are application/problem+json."""

    def generate_rules(self) -> Any:
        for rule in super().generate_rules():
            if isinstance(rule, Rule) and (
                rule.rule.startswith(PREFIX) or rule.rule in OAUTH_PATHS
            ):
                yield rule

    # What any state-changing call can answer before its handler runs.
    COMMON_ERRORS = {
        400: "The body is not valid JSON.",
        403: "Cross-site request refused (Origin is not this service).",
        413: "The body is larger than this service accepts.",
        415: "The body is not application/json.",
        422: "The body is JSON, but not an object of the fields this call takes.",
    }

    def schema(self) -> dict[str, Any]:
        spec = super().schema()
        problem_ref = {"$ref": "#/components/schemas/Problem"}
        spec.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
            Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for path, methods in spec.get("paths", {}).items():
            if path in OAUTH_PATHS:
                continue
            for method, operation in methods.items():
                responses = operation.setdefault("responses", {})
                if method.upper() in UNSAFE_METHODS:
                    for status, description in self.COMMON_ERRORS.items():
                        responses.setdefault(status, {
                            "description": description,
                            "content": {"application/json": {"schema": problem_ref}},
                        })  # fmt: skip
                if "requestBody" in operation:
                    operation["requestBody"]["required"] = True  # a JSON object, even {}
                for status, response in responses.items():
                    content = response.get("content", {})
                    if str(status).startswith(("4", "5")) and "application/json" in content:
                        content["application/problem+json"] = content.pop("application/json")
        return spec
