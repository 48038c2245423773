"""An OpenID Connect authorization request (the query of ``/oauth/authorize``), read and judged
before anything else happens: OIDC Core 1.0 §3.1.2, RFC 7636 (PKCE), RFC 9700 (the security
best current practice), RFC 9207 (``iss`` in every answer).

Two kinds of "no", kept apart because of where they may go:

* :class:`Unredirectable`: the client is unknown or the redirect URI is not one of its own
  (matched exactly). Nothing may be sent to that URI (an open redirector, or a code sent to
  an attacker), so the person gets an error page.
* :class:`Refusal`: everything else, answered to the client's own redirect URI with
  ``error``, ``error_description``, ``state`` and ``iss``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

from shared.i18n import N_
from shared.models import Client

PROMPTS = frozenset({"none", "login", "consent"})
# RFC 7636 §4.1: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"; an S256
# challenge is the base64url of a SHA-256: 43 characters.
S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
STATE_MAX, NONCE_MAX, HINT_MAX = 512, 512, 320


class Unredirectable(Exception):
    """No redirect may answer this request: show the person a page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Refusal(Exception):
    """An OAuth error for the client, sent to its (verified) redirect URI: ``error`` is
    invalid_request, unsupported_response_type, invalid_scope, login_required ..."""

    def __init__(self, error: str, description: str, redirect_uri: str, state: str | None) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description = error, description
        self.redirect_uri, self.state = redirect_uri, state

    def location(self, issuer: str) -> str:
        return with_query(
            self.redirect_uri,
            {"error": self.error, "error_description": self.description,
             "state": self.state, "iss": issuer},
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A request that may go on to sign-in and consent."""

    client: Client
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str | None  # S256 only: "plain" is refused (no downgrade)
    prompt: frozenset[str] = field(default_factory=frozenset)
    max_age: int | None = None
    login_hint: str | None = None
    ui_locales: tuple[str, ...] = ()

    def answer(self, issuer: str, code: str) -> str:
        """Where the browser goes with the code (RFC 9207: with ``iss``)."""
        return with_query(self.redirect_uri, {"code": code, "state": self.state, "iss": issuer})


def with_query(uri: str, values: Mapping[str, str | None]) -> str:
    """``uri`` with ``values`` added to its query (the ones it has are kept)."""
    parts = urlsplit(uri)
    added = urlencode({name: value for name, value in values.items() if value is not None})
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def judge(query: Mapping[str, str], client: Client | None) -> AuthorizationRequest:
    """The request, or a raised :class:`Unredirectable` or :class:`Refusal`. ``client`` is
    the one ``client_id`` names (None when it names none)."""
    if client is None:
        raise Unredirectable(N_("This application is not registered here."))
    redirect_uri = query.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        # Exactly one of its own, character for character (RFC 9700 §4.1.3).
        raise Unredirectable(
            N_("This application asked to come back to an address it has not registered.")
        )
    state = query.get("state") or None

    def refuse(error: str, description: str) -> Refusal:
        return Refusal(error, description, redirect_uri, state)

    if state is not None and len(state) > STATE_MAX:
        raise Refusal("invalid_request", "state is too long", redirect_uri, None)
    if query.get("request") or query.get("request_uri"):
        raise refuse("request_not_supported", "request objects are not supported")
    if query.get("response_type") != "code":
        raise refuse("unsupported_response_type", "only response_type=code is supported")
    if "authorization_code" not in client.grants:
        raise refuse("unauthorized_client", "this client may not use the authorization code flow")
    mode = query.get("response_mode")
    if mode not in (None, "", "query"):
        raise refuse("invalid_request", "only response_mode=query is supported")
    scopes = tuple(dict.fromkeys(query.get("scope", "").split()))
    if "openid" not in scopes:
        raise refuse("invalid_scope", "the openid scope is required")
    if not set(scopes) <= set(client.scopes):
        extra = " ".join(sorted(set(scopes) - set(client.scopes)))
        raise refuse("invalid_scope", f"not allowed for this client: {extra}")
    challenge, method = query.get("code_challenge"), query.get("code_challenge_method")
    if challenge is None and method is not None:
        raise refuse("invalid_request", "code_challenge_method without a code_challenge")
    if challenge is not None:
        if (method or "plain") != "S256":
            raise refuse("invalid_request", "code_challenge_method must be S256")
        if not S256_CHALLENGE.match(challenge):
            raise refuse("invalid_request", "code_challenge is not an S256 challenge")
    elif client.secret_hash is None:
        raise refuse("invalid_request", "a public client must use PKCE (S256)")
    nonce = query.get("nonce") or None
    if nonce is not None and len(nonce) > NONCE_MAX:
        raise refuse("invalid_request", "nonce is too long")
    prompt = frozenset(query.get("prompt", "").split())
    if not prompt <= PROMPTS:
        raise refuse("invalid_request", f"unknown prompt: {' '.join(sorted(prompt - PROMPTS))}")
    if "none" in prompt and len(prompt) > 1:
        raise refuse("invalid_request", "prompt=none goes alone")
    max_age = None
    if query.get("max_age") not in (None, ""):
        raw = query["max_age"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
            raise refuse("invalid_request", "max_age is a number of seconds")
        max_age = int(raw)
    hint = query.get("login_hint") or None
    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        nonce=nonce,
        code_challenge=challenge,
        prompt=prompt,
        max_age=max_age,
        login_hint=hint[:HINT_MAX] if hint else None,
        ui_locales=tuple(query.get("ui_locales", "").split()[:10]),
    )
