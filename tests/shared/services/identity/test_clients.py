"""Registering the applications that sign people in here: exact redirect URIs under the
rules of RFC 9700 and RFC 8252, known scopes and grants only, a confidential client's secret
shown once and stored as a digest, rotation and removal."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shared.models import Client
from shared.services.context import ServiceContext
from shared.services.identity import clients as oidc_clients
from shared.services.identity.clients import ClientSpec
from shared.validation import InvalidInput, check_redirect_uri


@pytest.mark.parametrize(
    ("uri", "public", "accepted"),
    [
        ("https://app.example.com/callback", False, True),
        ("https://app.example.com/cb?tenant=1", False, True),
        ("http://localhost:8080/callback", False, True),
        ("http://127.0.0.1/cb", True, True),
        ("http://[::1]:9000/cb", True, True),
        ("com.example.app:/callback", True, True),
        ("com.example.app:/callback", False, False),  # a private scheme: native apps only
        ("http://app.example.com/callback", False, False),  # plain http off loopback
        ("https://app.example.com/cb#fragment", False, False),
        ("https://*.example.com/cb", False, False),
        ("https://app.example.com/c b", False, False),
        ("javascript:alert(1)", True, False),
        ("/relative/callback", False, False),
        (" https://app.example.com/cb", False, False),
    ],
)
def test_redirect_uris(uri: str, public: bool, accepted: bool) -> None:
    if accepted:
        assert check_redirect_uri(uri, public=public) == uri
    else:
        with pytest.raises(ValueError, match="redirect URI"):
            check_redirect_uri(uri, public=public)


async def test_a_confidential_client_gets_a_secret_once(services_ctx: ServiceContext) -> None:
    ctx = services_ctx
    spec = ClientSpec(name="Grafana", redirect_uris=["https://grafana.example.com/login"])
    registered = await oidc_clients.add(ctx, spec)
    assert registered.secret is not None
    async with ctx.reading() as session:
        stored = await session.scalar(select(Client.secret_hash))
    assert stored is not None and registered.secret not in stored  # a digest only
    client = await oidc_clients.by_id(ctx, registered.client.client_id)
    assert client is not None and client.scopes == ["openid", "profile", "email"]
    assert oidc_clients.secret_matches(client, registered.secret)
    assert not oidc_clients.secret_matches(client, registered.secret + "x")

    new = await oidc_clients.rotate_secret(ctx, client.client_id)
    client = await oidc_clients.by_id(ctx, client.client_id)
    assert new is not None and client is not None
    assert oidc_clients.secret_matches(client, new)
    assert not oidc_clients.secret_matches(client, registered.secret)  # the old one: gone
    assert await oidc_clients.remove(ctx, client.client_id)
    assert await oidc_clients.by_id(ctx, client.client_id) is None
    assert not await oidc_clients.remove(ctx, client.client_id)


async def test_a_public_client_has_no_secret_and_no_client_credentials(
    services_ctx: ServiceContext,
) -> None:
    ctx = services_ctx
    spa = await oidc_clients.add(
        ctx, ClientSpec(name="SPA", redirect_uris=["http://localhost:5173/cb"], public=True)
    )
    assert spa.secret is None
    assert await oidc_clients.rotate_secret(ctx, spa.client.client_id) is None
    assert not oidc_clients.secret_matches(spa.client, "")
    with pytest.raises(InvalidInput) as refused:
        await oidc_clients.add(
            ctx,
            ClientSpec(
                name="",
                redirect_uris=["http://evil.example.com/cb"],
                public=True,
                scopes=["openid", "admin"],
                grants=["client_credentials"],
            ),
        )
    said = refused.value.message
    for problem in ("a name of 1 to 100", "http://evil.example.com/cb", "admin", "no secret"):
        assert problem in said
