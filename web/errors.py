"""Error pages in the site's layout, and the login redirect for protected pages.

Every HTTP error gets a page that says what happened and what to do next; an unexpected
exception is logged with its traceback and shown as a plain 500 page, never a stack trace.
"""

from __future__ import annotations

import logging
import traceback

from quart import Quart, Response, redirect, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import Unauthorized
from werkzeug.exceptions import HTTPException, InternalServerError

from shared.i18n import N_
from shared.outages import OutageLog, is_unavailable
from shared.services import operations
from shared.services.refusals import Locked, ReauthenticationRequired, Refused
from web.extensions import services
from web.forms import CSRFError
from web.problems import problem
from web.ratelimit import too_many
from web.reauth import to_reauthenticate
from web.templating import render_template

log = logging.getLogger(__name__)

MESSAGES = {
    400: (
        N_("Bad request"),
        N_("The request could not be understood. Please go back and try again."),
    ),
    403: (N_("Forbidden"), N_("You do not have access to this page.")),
    404: (N_("Page not found"), N_("There is no page at this address.")),
    405: (N_("Method not allowed"), N_("This page cannot be used that way.")),
    413: (
        N_("Too large"),
        N_("What you sent is larger than this site accepts. Please shorten it."),
    ),
    429: (N_("Too many requests"), N_("You are going a bit fast. Please wait and try again.")),
    500: (N_("Something went wrong"), N_("An unexpected error occurred. It has been logged.")),
    503: (
        N_("Temporarily unavailable"),
        N_("The service is briefly unavailable. Please try again in a moment."),
    ),
}
RETRY_UNAVAILABLE = 5  # seconds a client is asked to wait while a backing service is down


def register_error_handlers(app: Quart) -> None:
    outages = OutageLog(log, "answering 503")  # this app's view of its backing services

    @app.after_request
    async def note_recovery(response: Response) -> Response:
        if outages.since is not None and response.status_code < 500:
            outages.up()
        return response

    @app.errorhandler(Unauthorized)
    async def login_first(error: Unauthorized) -> ResponseReturnValue:
        target = request.full_path.rstrip("?") if request.method == "GET" else request.path
        return redirect(url_for("accounts.login", next=target))

    @app.errorhandler(Locked)
    async def locked(error: Locked) -> ResponseReturnValue:
        # Too many attempts (the API's blueprint answers its own): the 429 page.
        return await http_error(too_many(error.message, error.retry_after))

    @app.errorhandler(ReauthenticationRequired)
    async def reauthenticate_first(error: ReauthenticationRequired) -> ResponseReturnValue:
        # A sensitive change from a sign-in that authenticated too long ago: confirm it is
        # you, then back to the page (the API's blueprint answers its own 401).
        return to_reauthenticate()

    @app.errorhandler(Refused)
    async def refused(error: Refused) -> ResponseReturnValue:
        # A refusal the page did not show itself (under a field, or as a flash): a page of
        # its own that says it, with its status (the API's blueprint answers its own).
        return await _page(error.status, error.title, error.message)

    @app.errorhandler(CSRFError)
    async def csrf_failed(error: CSRFError) -> ResponseReturnValue:
        return await _page(400, "This form has expired", str(error.description))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> ResponseReturnValue:
        code = error.code or 500
        title, message = MESSAGES.get(code, (error.name, error.description or ""))
        if code == 429 and error.description:
            message = error.description  # says how long to wait
        # What the exception itself says in headers (405's Allow, above all) is kept.
        headers = {name: value for name, value in error.get_headers() if name != "Content-Type"}
        retry_after = getattr(error, "retry_after", None)
        if code == 429 and retry_after:
            headers["Retry-After"] = str(retry_after)
        if _wants_problem():
            return problem(code, title, message, headers=headers)
        return await _page(code, title, message, headers)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> ResponseReturnValue:
        if isinstance(error, HTTPException):
            return await http_error(error)
        if is_unavailable(error):
            # An outage, not a bug: one line when it starts and one when it ends (no
            # traceback), no admin alert (it would need the database itself), and a 503 the
            # client may retry.
            outages.down(error)
            title, message = MESSAGES[503]
            headers = {"Retry-After": str(RETRY_UNAVAILABLE)}
            if _wants_problem():
                return problem(503, title, message, headers=headers)
            return await _page(503, title, message, headers)
        log.exception("unhandled error on %s %s", request.method, request.path)
        await _tell_admins(error)
        title, message = MESSAGES[500]
        if _wants_problem():
            return problem(InternalServerError.code, title, message)
        return await _page(InternalServerError.code, title, message)


def _wants_problem() -> bool:
    """API paths answer in application/problem+json, pages in HTML."""
    return request.path.startswith("/api/")


async def _tell_admins(error: Exception) -> None:
    try:
        await operations.alert_admins_of(
            services(),
            key=f"web:{type(error).__name__}:{request.endpoint}",
            summary=f"{type(error).__name__} on {request.method} {request.path}",
            details="".join(traceback.format_exception(error)),
        )
    except Exception:  # the alert must never turn one error into two
        log.exception("could not queue the admin alert")


async def _page(
    code: int, title: str, message: str, headers: dict[str, str] | None = None
) -> tuple[str, int, dict[str, str]]:
    body = await render_template("errors/error.html", title=title, code=code, message=message)
    return body, code, headers or {}
