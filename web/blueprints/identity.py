"""The identity provider's public documents (OpenID Connect): the JSON Web Key Set that relying
parties and resource servers verify this service's tokens with."""

from __future__ import annotations

from quart import Blueprint, jsonify
from quart.typing import ResponseReturnValue

from shared.services import signing_keys
from web.extensions import services

blueprint = Blueprint("identity", __name__)


@blueprint.get("/.well-known/jwks.json")
async def jwks() -> ResponseReturnValue:
    """Every published key's public half. Cached for OIDC_JWKS_MAX_AGE: a new key is
    published OIDC_KEY_PUBLISH_AHEAD (at least as long) before it signs."""
    context = services()
    response = jsonify(await signing_keys.key_set(context))
    response.headers["Cache-Control"] = f"public, max-age={context.settings.OIDC_JWKS_MAX_AGE}"
    response.headers["Access-Control-Allow-Origin"] = "*"  # public keys, for any client
    return response
