"""Dynamic client registration (RFC 7591 §3), off unless OIDC_DYNAMIC_REGISTRATION: the
metadata an application sends, checked with the same rules as ``python -m web oidc clients
add`` (:mod:`.clients`), into a registered client. Such a client is never first-party (it
always gets the consent page)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shared.services.context import ServiceContext
from shared.services.identity import clients
from shared.validation import InvalidInput

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")


class RegistrationError(Exception):
    """RFC 7591 §3.2.2: ``invalid_redirect_uri`` or ``invalid_client_metadata``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


@dataclass(frozen=True, slots=True)
class Metadata:
    redirect_uris: list[str]
    client_name: str = ""
    token_endpoint_auth_method: str = "client_secret_basic"  # noqa: S105 (a method's name)
    grant_types: list[str] | None = None
    response_types: list[str] | None = None
    scope: str | None = None
    backchannel_logout_uri: str | None = None
    post_logout_redirect_uris: list[str] | None = None


async def register(ctx: ServiceContext, metadata: Metadata) -> dict[str, Any]:
    """The registered client's information response (RFC 7591 §3.2.1)."""
    if metadata.token_endpoint_auth_method not in AUTH_METHODS:
        raise RegistrationError(
            "invalid_client_metadata",
            f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}",
        )
    if metadata.response_types not in (None, ["code"]):
        raise RegistrationError("invalid_client_metadata", 'response_types must be ["code"]')
    public = metadata.token_endpoint_auth_method == "none"  # noqa: S105 (a method's name)
    grants = metadata.grant_types or ["authorization_code", "refresh_token"]
    scopes = metadata.scope.split() if metadata.scope else list(clients.DEFAULT_SCOPES)
    spec = clients.ClientSpec(
        name=metadata.client_name or "Unnamed application",
        redirect_uris=metadata.redirect_uris,
        public=public,
        scopes=scopes,
        grants=grants,
        backchannel_logout_uri=metadata.backchannel_logout_uri,
        post_logout_redirect_uris=metadata.post_logout_redirect_uris or (),
    )
    try:
        registered = await clients.add(ctx, spec)
    except InvalidInput as error:
        kind = (
            "invalid_redirect_uri" if "redirect URI" in error.message else "invalid_client_metadata"
        )
        raise RegistrationError(kind, error.message) from error
    client = registered.client
    answer: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": int(time.time()),
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grants,
        "response_types": ["code"],
        "scope": " ".join(client.scopes),
        "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
    }
    if client.backchannel_logout_uri:
        answer["backchannel_logout_uri"] = client.backchannel_logout_uri
    if registered.secret is not None:
        answer["client_secret"] = registered.secret
        answer["client_secret_expires_at"] = 0  # it does not expire
    return answer
