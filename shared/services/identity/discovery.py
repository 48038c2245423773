"""The provider's metadata (OpenID Connect Discovery 1.0 §3, RFC 8414 §2): what a relying
party configures itself from, so every endpoint and capability is said here once."""

from __future__ import annotations

from typing import Any

from shared.services.identity.claims import ACR_VALUES, CLAIMS
from shared.services.identity.clients import GRANTS, SCOPES
from shared.services.identity.keys import ALGORITHMS
from shared.services.identity.requests import PROMPTS
from shared.settings import Settings

CLIENT_AUTH = ["client_secret_basic", "client_secret_post"]


def document(settings: Settings) -> dict[str, Any]:
    base = settings.base_url
    meta: dict[str, Any] = {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "end_session_endpoint": f"{base}/oauth/logout",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANTS),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "userinfo_signing_alg_values_supported": ["none"],
        "token_endpoint_auth_methods_supported": [*CLIENT_AUTH, "none"],
        "revocation_endpoint_auth_methods_supported": [*CLIENT_AUTH, "none"],
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": list(CLAIMS),
        "acr_values_supported": list(ACR_VALUES),
        "prompt_values_supported": sorted(PROMPTS),
        "ui_locales_supported": list(settings.LANGUAGES),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "access_token_signing_alg_values_supported": list(ALGORITHMS[:1]),
    }
    if settings.OIDC_DYNAMIC_REGISTRATION:
        meta["registration_endpoint"] = f"{base}/oauth/register"
    return meta
