"""The session cookie's signer is built once per key set, and still checks signatures."""

from __future__ import annotations

import pytest
from itsdangerous import BadSignature
from quart import Quart

from web.cookie_session import CookieSessionInterface


async def test_one_signer_per_key_set(app: Quart) -> None:
    interface = app.session_interface
    assert isinstance(interface, CookieSessionInterface)
    first = interface.get_signing_serializer(app)
    assert first is interface.get_signing_serializer(app)
    cookie = first.dumps({"csrf": "x"}) if first else ""
    old_key = app.secret_key
    app.secret_key = "another secret key, rotated"
    app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    try:
        rotated = interface.get_signing_serializer(app)
        assert rotated is not first
        assert rotated is not None and rotated.loads(cookie) == {"csrf": "x"}  # the fallback
        app.config["SECRET_KEY_FALLBACKS"] = []
        alone = interface.get_signing_serializer(app)
        assert alone is not None
        assert alone.loads(alone.dumps({"a": 1})) == {"a": 1}
        with pytest.raises(BadSignature):  # the old key no longer accepted
            alone.loads(cookie)
    finally:
        app.secret_key = old_key
        app.config["SECRET_KEY_FALLBACKS"] = []


async def test_a_forged_session_cookie_is_an_empty_session(app: Quart) -> None:
    client = app.test_client()
    client.set_cookie("127.0.0.1", "session", "eyJjc3JmIjoieCJ9.forged.signature")
    response = await client.get("/reset-password")
    assert response.status_code == 200
