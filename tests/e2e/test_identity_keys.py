"""The identity provider's keys as outsiders use them: the operator's command line rotates
them, and PyJWT's ``PyJWKClient`` (what many resource servers verify tokens with) fetches
the live JWKS over HTTP and verifies tokens signed with the current key, before and after
a rotation, while it still holds the key set it fetched first."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from joserfc import jwt

from shared.db import SessionMaker
from shared.services.identity import keys as signing_keys
from shared.settings import Settings
from tests.support import ROOT, Stack, committing_context, settings_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_db")]


def oidc(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m web oidc ARGS`` as an operator runs it, on the test database."""
    return subprocess.run(
        [sys.executable, "-m", "web", "oidc", *args],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def cli(settings: Settings, *args: str) -> str:
    return oidc(settings, "keys", *args).stdout


async def test_resource_servers_verify_tokens_with_the_published_keys(
    settings: Settings,
    engine: Any,
    sessionmaker: SessionMaker,
    queue: Any,
    tmp_path: Path,
) -> None:
    ctx = committing_context(settings, engine, sessionmaker, queue)
    first = cli(settings, "rotate").split("\n")
    assert [line.split()[0] for line in first if line] == ["RS256", "ES256"]
    stack = Stack(settings, tmp_path)
    try:
        await wait_for(stack.up, timeout=60, every=0.2)
        client = pyjwt.PyJWKClient(f"{stack.base_url}/.well-known/jwks.json", lifespan=600)

        async def verified(alg: str) -> dict[str, Any]:
            signer = await signing_keys.signer(ctx, alg)
            token = jwt.encode({"alg": alg, "kid": signer.kid}, {"sub": "42"}, signer.key)
            key = await asyncio.to_thread(client.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = pyjwt.decode(token, key, algorithms=[alg])
            return claims

        assert await verified("RS256") == {"sub": "42"}
        assert await verified("ES256") == {"sub": "42"}
        # A rotation publishes the new keys at once; the old ones keep signing for now, so the
        # client's cached set still verifies what is signed.
        second = cli(settings, "rotate")
        assert await verified("RS256") == {"sub": "42"}
        listing = cli(settings, "list")
        for line in (*first, *second.split("\n")):
            if line:
                assert line.split()[1] in listing
    finally:
        stack.stop()


def clients(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return oidc(settings, "clients", *args, check=check)


def test_the_operator_registers_lists_rotates_and_removes_clients(settings: Settings) -> None:
    added = clients(
        settings, "add", "--name", "Grafana",
        "--redirect-uri", "https://grafana.example.com/login/generic_oauth",
        "--redirect-uri", "https://grafana.example.com/other",
        "--backchannel-logout-uri", "https://grafana.example.com/logout",
    ).stdout  # fmt: skip
    lines = dict(line.split(": ", 1) for line in added.splitlines() if ": " in line)
    client_id, secret = lines["client_id"], lines["client_secret"]
    public = clients(
        settings, "add", "--name", "SPA", "--public", "--redirect-uri", "http://localhost:5173/cb"
    ).stdout
    assert "client_secret" not in public
    listing = clients(settings, "list").stdout
    assert client_id in listing and "'Grafana'  confidential" in listing and "public" in listing
    assert secret not in listing  # shown once
    rotated = clients(settings, "rotate-secret", client_id).stdout
    assert rotated.startswith("client_secret: ") and secret not in rotated
    refused = clients(
        settings, "add", "--name", "Bad", "--redirect-uri", "http://evil.example.com/cb",
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "must be https://" in refused.stderr
    assert clients(settings, "remove", client_id).stdout == f"client {client_id} removed\n"
    assert clients(settings, "remove", client_id, check=False).returncode == 1
