"""The ID token checks of signing in with another provider (OIDC Core §3.1.3.7), against a
key set served over real HTTP on loopback: a token signed by a key the issuer did not publish,
for another audience, with another nonce or issuer, expired, unsigned or HMAC-signed with the
public key is refused; the provider's own token passes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from shared.federation import Provider
from shared.services.context import ServiceContext
from shared.services.federation import client

KEY = RSAKey.generate_key(2048, {"kid": "published", "alg": "RS256", "use": "sig"}, private=True)
STRANGER = RSAKey.generate_key(2048, {"kid": "published", "alg": "RS256"}, private=True)


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    keys = {"keys": [KEY.as_dict(private=False)]}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            body = keys if self.path == "/jwks" else {
                "issuer": base, "authorization_endpoint": f"{base}/auth",
                "token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks",
            }  # fmt: skip
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def claims(issuer: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": issuer, "sub": "u-1", "aud": "rp", "iat": now, "exp": now + 300, "nonce": "n-1"}
    return {**base, **changes}


async def verify(ctx: ServiceContext, issuer: str, token: str) -> dict[str, Any]:
    provider = Provider("op", "OP", issuer, "rp", "secret")
    meta = await client.metadata(ctx, provider)
    return await client.verified_id_token(ctx, provider, meta, token, nonce="n-1")


def signed(payload: dict[str, Any], key: RSAKey = KEY) -> str:
    return jwt.encode({"alg": "RS256", "kid": "published"}, payload, key)


async def test_the_provider_s_own_token_passes(services_ctx: ServiceContext, issuer: str) -> None:
    assert (await verify(services_ctx, issuer, signed(claims(issuer))))["sub"] == "u-1"


@pytest.mark.parametrize(
    "attack",
    ["another key", "another audience", "another nonce", "another issuer", "expired",
     "several audiences, another azp", "unsigned", "hmac with the public key"],
)  # fmt: skip
async def test_a_token_that_is_not_for_this_flow_is_refused(
    services_ctx: ServiceContext, issuer: str, attack: str
) -> None:
    token = {
        "another key": lambda: signed(claims(issuer), STRANGER),
        "another audience": lambda: signed(claims(issuer, aud="someone-else")),
        "another nonce": lambda: signed(claims(issuer, nonce="n-2")),
        "another issuer": lambda: signed(claims(issuer, iss="https://evil.example")),
        "expired": lambda: signed(claims(issuer, exp=int(time.time()) - 3600)),
        "several audiences, another azp": lambda: signed(
            claims(issuer, aud=["rp", "other"], azp="other")
        ),
        "unsigned": lambda: unsigned(claims(issuer)),
        "hmac with the public key": lambda: jwt.encode(
            {"alg": "HS256", "kid": "published"},
            claims(issuer),
            OctKey.import_key(json.dumps(KEY.as_dict(private=False)).encode()),
        ),
    }[attack]()
    with pytest.raises(client.ProviderRefused):
        await verify(services_ctx, issuer, token)


def unsigned(payload: dict[str, Any]) -> str:
    import base64

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(payload)}."
