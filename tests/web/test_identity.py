"""The identity provider's public key set, as served: cacheable (a new key is published long
before it signs), readable from any origin, public halves only."""

from __future__ import annotations

import pytest
from quart import Quart

from shared.services.identity import keys as signing_keys
from shared.settings import Settings, SettingsError
from web.extensions import SERVICES_KEY


async def test_the_key_set_is_public_and_cacheable(app: Quart) -> None:
    client = app.test_client()
    empty = await client.get("/.well-known/jwks.json")
    assert empty.status_code == 200 and await empty.get_json() == {"keys": []}
    await signing_keys.signer(app.extensions[SERVICES_KEY])
    answer = await client.get("/.well-known/jwks.json")
    assert answer.headers["Cache-Control"] == "public, max-age=600"
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    keys = (await answer.get_json())["keys"]
    assert sorted(key["alg"] for key in keys) == ["ES256", "RS256"]
    for key in keys:
        assert key["use"] == "sig" and key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)  # no private parameters


def test_a_key_must_be_published_before_caches_expire(base_settings: Settings) -> None:
    with pytest.raises(SettingsError, match="OIDC_KEY_PUBLISH_AHEAD must be at least"):
        base_settings.with_values(OIDC_KEY_PUBLISH_AHEAD=60, OIDC_JWKS_MAX_AGE=600)
