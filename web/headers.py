"""Security headers on every response."""

from __future__ import annotations

from quart import Quart, Response, request

from shared.settings import Settings

# Only this site's own files: no inline script or style, no plugins, no framing, forms post
# only here. The pages and the static files are written to need nothing more.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


def add_security_headers(app: Quart, settings: Settings) -> None:
    @app.after_request
    async def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if not request.path.startswith("/static/"):
            # Pages carry per-session CSRF tokens and, signed in, personal data: no cache
            # (a shared proxy's, or the browser's back button after sign-out) keeps them.
            headers.setdefault("Cache-Control", "no-store")
        if settings.secure_cookies:  # BASE_URL is https
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response


def form_action_to(response: Response, *origins: str) -> None:
    """Let this page's forms lead to ``origins`` too: a consent or sign-out page whose form
    ends in a redirect to an application (browsers apply ``form-action`` to the redirects
    after a form is sent, too)."""
    allowed = " ".join(["'self'", *origins])
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'", f"form-action {allowed}"
    )
