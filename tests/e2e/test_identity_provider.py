"""The identity provider against relying parties nobody here wrote, on a live stack
(``python -m web`` and ``python -m worker``): Authlib's async client (confidential, code + PKCE,
refresh, revocation, introspection), PyJWT's ``PyJWKClient`` as a resource server verifying
access tokens offline (through a key rotation, from its cached key set), openid-client (npm)
as a public client, and back-channel logout delivered by the worker after "sign out
everywhere else"."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from shared.db import SessionMaker
from shared.settings import Settings
from tests.e2e.identity_peers import Person, account, node_peers
from tests.receiver import Receiver, serving
from tests.support import ROOT, Stack, free_port, settings_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_db")]


def oidc_cli(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "web", "oidc", *args],
        cwd=ROOT, env=settings_env(settings), capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    return done.stdout


def registered(settings: Settings, *args: str) -> tuple[str, str | None]:
    """``clients add ARGS``: the client id and secret it printed."""
    printed = dict(
        line.split(": ", 1) for line in oidc_cli(settings, "clients", "add", *args).splitlines()
        if ": " in line and line.startswith("client_")
    )  # fmt: skip
    return printed["client_id"], printed.get("client_secret")


class CountingJWKClient(pyjwt.PyJWKClient):
    """PyJWT's client, counting how often it fetched the key set."""

    fetched = 0

    def fetch_data(self) -> Any:
        self.fetched += 1
        return super().fetch_data()


async def test_authlib_client_and_an_offline_resource_server(
    settings: Settings, sessionmaker: SessionMaker, queue: Any, tmp_path: Path
) -> None:
    await account(sessionmaker)
    stack = Stack(settings, tmp_path)
    callback = f"{stack.base_url}/app/callback"
    client_id, secret = registered(settings, "--name", "Authlib app", "--redirect-uri", callback)
    assert secret is not None
    person = Person(stack.base_url)
    try:
        await wait_for(stack.up, timeout=60, every=0.2)
        meta = (await person.http.get("/.well-known/openid-configuration")).json()
        rp = AsyncOAuth2Client(
            client_id, secret, scope="openid email profile", redirect_uri=callback,
            code_challenge_method="S256", token_endpoint_auth_method="client_secret_basic",
        )  # fmt: skip
        keys = CountingJWKClient(meta["jwks_uri"], cache_jwk_set=True, lifespan=600)

        async def sign_in_through(rp: AsyncOAuth2Client) -> dict[str, Any]:
            verifier = generate_token(48)
            url, _ = rp.create_authorization_url(
                meta["authorization_endpoint"], code_verifier=verifier, nonce="n-0S6"
            )
            back = await person.authorize(url, callback)
            assert parse_qs(urlsplit(back).query)["iss"] == [meta["issuer"]]  # RFC 9207
            token: dict[str, Any] = await rp.fetch_token(
                meta["token_endpoint"], authorization_response=back, code_verifier=verifier
            )
            return token

        def verified(value: str, typ: str = "at+jwt") -> dict[str, Any]:
            """What a resource server does: the key from the (cached) set, then the checks."""
            assert pyjwt.get_unverified_header(value)["typ"] == typ
            key = keys.get_signing_key_from_jwt(value)
            claims: dict[str, Any] = pyjwt.decode(
                value, key, algorithms=["RS256"], audience=client_id, issuer=meta["issuer"]
            )
            return claims

        token = await sign_in_through(rp)
        id_token = await asyncio.to_thread(verified, token["id_token"], "JWT")
        assert id_token["nonce"] == "n-0S6" and id_token["email"] == "alice@example.com"
        access = await asyncio.to_thread(verified, token["access_token"])
        assert access["sub"] == id_token["sub"] and access["scope"] == "openid email profile"
        assert keys.fetched == 1

        # Refresh: a new pair; the old refresh token is spent.
        fresh = await rp.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
        assert fresh["refresh_token"] != token["refresh_token"]
        info = await rp.get(meta["userinfo_endpoint"])  # with the client's newest token
        assert info.json()["preferred_username"] == "user0"

        # A rotation while the resource server caches the old key set: tokens are still
        # signed with a key it has (the new one is only published, for now).
        oidc_cli(settings, "keys", "rotate")
        rotated = await sign_in_through(rp)
        await asyncio.to_thread(verified, rotated["access_token"])
        assert keys.fetched == 1

        # Revocation (RFC 7009), then introspection (RFC 7662) says inactive.
        await rp.revoke_token(
            meta["revocation_endpoint"], token=fresh["refresh_token"],
            token_type_hint="refresh_token",
        )  # fmt: skip
        introspection = meta["introspection_endpoint"]
        answer = await rp.introspect_token(introspection, token=fresh["access_token"])
        assert answer.json() == {"active": False}
        live = await rp.introspect_token(introspection, token=rotated["access_token"])
        assert live.json()["active"] is True and live.json()["sub"] == id_token["sub"]
        await rp.aclose()
    finally:
        await person.close()
        stack.stop()


async def test_openid_client_as_a_public_client(
    settings: Settings, sessionmaker: SessionMaker, queue: Any, tmp_path: Path
) -> None:
    peers = node_peers()
    await account(sessionmaker)
    stack = Stack(settings, tmp_path, host="localhost")
    callback = f"{stack.base_url}/spa/callback"
    client_id, secret = registered(
        settings, "--name", "Node app", "--redirect-uri", callback, "--public", "--first-party"
    )
    assert secret is None
    person = Person(stack.base_url)
    node = None
    try:
        await wait_for(stack.up, timeout=60, every=0.2)
        node = await asyncio.create_subprocess_exec(
            "node", str(peers / "openid_client_rp.mjs"), stack.base_url, client_id, callback,
            cwd=peers, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert node.stdin is not None and node.stdout is not None
        first = json.loads(await asyncio.wait_for(node.stdout.readline(), 60))
        back = await person.authorize(first["authorize"], callback)
        node.stdin.write(back.encode() + b"\n")
        await node.stdin.drain()
        out, err = await asyncio.wait_for(node.communicate(), 60)
        assert node.returncode == 0, err.decode()
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["claims"]["email"] == "alice@example.com"
        assert result["claims"]["iss"] == stack.base_url
        assert result["userinfo"]["sub"] == result["claims"]["sub"]
        assert result["refreshed"] is True
        assert result["reuse"] == "invalid_grant"  # the old refresh token again ...
        assert result["afterReuse"] == "invalid_grant"  # ... revoked the whole family
    finally:
        if node is not None and node.returncode is None:
            node.kill()
        await person.close()
        stack.stop()


async def test_back_channel_logout_after_signing_out_everywhere_else(
    settings: Settings, sessionmaker: SessionMaker, queue: Any, tmp_path: Path
) -> None:
    await account(sessionmaker)
    receiver = Receiver(free_port())
    stack = Stack(settings, tmp_path, WEBHOOKS_ALLOW_PRIVATE=True)
    callback = f"{stack.base_url}/app/callback"
    client_id, secret = registered(
        settings, "--name", "Told app", "--redirect-uri", callback, "--first-party",
        "--backchannel-logout-uri", receiver.url,
    )  # fmt: skip
    there, here = Person(stack.base_url), Person(stack.base_url)
    try:
        with serving(receiver):
            await wait_for(stack.up, timeout=60, every=0.2)
            meta = (await here.http.get("/.well-known/openid-configuration")).json()
            rp = AsyncOAuth2Client(client_id, secret, scope="openid", redirect_uri=callback)
            url, _ = rp.create_authorization_url(meta["authorization_endpoint"], nonce="n")
            token = await rp.fetch_token(
                meta["token_endpoint"], authorization_response=await there.authorize(url, callback)
            )
            sid = pyjwt.decode(token["id_token"], options={"verify_signature": False})["sid"]
            # Elsewhere, the owner signs out everywhere else.
            await here.sign_in()
            page = await here.http.get("/account/sessions")
            from tests.e2e.identity_peers import _csrf

            ended = await here.http.post(
                "/account/sessions/revoke-others", data={"csrf_token": _csrf(page.text)}
            )
            assert ended.status_code == 302
            await wait_for(lambda: bool(receiver.received), timeout=30, every=0.1)
            delivery = receiver.received[0]
            assert delivery.headers["content-type"] == "application/x-www-form-urlencoded"
            logout_token = parse_qs(delivery.body.decode())["logout_token"][0]
            keys = pyjwt.PyJWKClient(meta["jwks_uri"])
            assert pyjwt.get_unverified_header(logout_token)["typ"] == "logout+jwt"
            claims = pyjwt.decode(
                logout_token, keys.get_signing_key_from_jwt(logout_token),
                algorithms=["RS256"], audience=client_id, issuer=meta["issuer"],
            )  # fmt: skip
            assert claims["sid"] == sid and "nonce" not in claims
            assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"]
            # And the tokens it had are over.
            answer = await rp.post(
                meta["token_endpoint"],
                data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
                auth=(client_id, secret or ""),
            )
            assert answer.status_code == 400
            await rp.aclose()
    finally:
        await there.close()
        await here.close()
        stack.stop()
