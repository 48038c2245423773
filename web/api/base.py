"""The API blueprint and what every endpoint shares: cross-site protection, the answers to
a body that does not validate, to a rule a use case refused (``InvalidInput``) and to its
refusals (:mod:`shared.services.refusals`, one problem type each), and ``@signed_in``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel
from quart import Blueprint, request, session
from quart.typing import ResponseReturnValue
from quart_schema import RequestSchemaValidationError, document_response

from shared import i18n
from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services.refusals import Locked, Refused
from shared.validation import LINK_DEAD, InvalidInput
from web.api.models import SecondStepOut
from web.auth import SECOND_STEP, current_sign_in
from web.extensions import services
from web.problems import Problem, problem

PREFIX = "/api/v1"
blueprint = Blueprint("api", __name__, url_prefix=PREFIX)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What an endpoint returns: a model (quart-schema validates and serialises it) with its
# status, or a problem Response.
ApiResult = ResponseReturnValue | tuple[BaseModel, int]


@blueprint.before_request
async def protect_against_cross_site_requests() -> ResponseReturnValue | None:
    if request.method not in UNSAFE_METHODS:
        return None
    if request.mimetype != "application/json":
        return problem(415, N_("Unsupported media type"), N_("Send the body as application/json."))
    origin = request.headers.get("Origin")
    if origin is not None and _origin(origin) != _origin(services().settings.base_url):
        return problem(
            403, N_("Cross-site request refused"), N_("This origin may not call the API.")
        )
    return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


@blueprint.errorhandler(RequestSchemaValidationError)
async def invalid_body(error: RequestSchemaValidationError) -> ResponseReturnValue:
    cause = error.validation_error
    errors: dict[str, list[str]] = {}
    if hasattr(cause, "errors"):
        for item in cause.errors():
            field = ".".join(str(part) for part in item["loc"]) or "body"
            message = str(item["msg"]).removeprefix("Value error, ")
            errors.setdefault(field, []).append(message)
    else:
        errors["body"] = [N_("The body must be a JSON object matching the schema.")]
    return problem(422, N_("Invalid request"), N_("Some fields are not valid."), errors=errors)


@blueprint.errorhandler(InvalidInput)
async def refused_input(error: InvalidInput) -> ResponseReturnValue:
    """A use case refused a field (a rule that needs the account or several fields)."""
    return problem(
        422,
        N_("Invalid request"),
        N_("Some fields are not valid."),
        errors={error.field: [error.message]},
    )


@blueprint.errorhandler(Refused)
async def refused(error: Refused) -> ResponseReturnValue:
    """A use case's refusal (shared.services.refusals), as one problem type each; with the
    field it is about, and how long to wait after too many attempts."""
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, Locked) else None
    errors = {error.field: [error.message]} if error.field else None
    return problem(
        error.status,
        error.title,
        error.message,
        errors=errors,
        headers=headers,
        problem_type=error.problem_type,
    )


def not_logged_in() -> ResponseReturnValue:
    return problem(401, N_("Not signed in"), N_("Sign in first."))


def invalid_token() -> ResponseReturnValue:
    return problem(400, N_("This link does not work"), LINK_DEAD)


Handler = Callable[..., Awaitable[ApiResult]]


def signed_in(handler: Handler) -> Handler:
    """For endpoints of a signed-in account: without a live sign-in the answer is 401 (a
    problem); with one, the handler gets it (the account and its session) first."""

    @functools.wraps(handler)
    async def run(*args: Any, **kwargs: Any) -> ApiResult:
        current = await current_sign_in()
        if current is None:
            return not_logged_in()
        return await handler(current, *args, **kwargs)

    documented: Handler = document_response(Problem, 401)(run)
    return documented


def second_step_follows(pending: str, *, remember: bool, accepted: str) -> ApiResult:
    """A first factor was right on an account that needs a second (the assurance rule): keep
    what the second step needs in the session cookie, and say where it goes (202)."""
    session[SECOND_STEP] = {"pending": pending, "remember": remember}
    return SecondStepOut(
        detail=_(
            "%(accepted)s accepted. Send a code from your authenticator app (or a recovery "
            "code) to /api/v1/login/two-factor, or use a passkey (/api/v1/login/passkey)."
        )
        % {"accepted": i18n.gettext(accepted)},
        second_step=True,
    ), 202
