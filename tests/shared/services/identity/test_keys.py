"""The identity provider's signing keys: made when first needed (RS256 and ES256, signing at
once), rotated with the new key published before it signs and the old one published until
its tokens have expired, sealed at rest. Time travels by moving the keys' moments back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select, update

from shared.models import SigningKey
from shared.services.context import ServiceContext
from shared.services.identity import keys as signing_keys


async def published(ctx: ServiceContext) -> list[str]:
    return [key["kid"] for key in (await signing_keys.key_set(ctx))["keys"]]


async def travel(ctx: ServiceContext, seconds: int) -> None:
    """Every moment of every key ``seconds`` earlier: as if that much time had passed."""
    shift = timedelta(seconds=seconds)
    async with ctx.unit_of_work() as session:
        await session.execute(
            update(SigningKey).values(
                created_at=SigningKey.created_at - shift,
                signs_from=SigningKey.signs_from - shift,
                retired_at=SigningKey.retired_at - shift,
                published_until=SigningKey.published_until - shift,
            )
        )


async def test_the_first_keys_sign_at_once_and_verify_from_the_key_set(
    services_ctx: ServiceContext,
) -> None:
    ctx = services_ctx
    assert await published(ctx) == []
    for alg in ("RS256", "ES256"):
        signer = await signing_keys.signer(ctx, alg)
        token = jwt.encode({"alg": alg, "kid": signer.kid}, {"sub": "42"}, signer.key)
        keys = KeySet.import_key_set(await signing_keys.key_set(ctx))  # type: ignore[arg-type]
        assert jwt.decode(token, keys).claims == {"sub": "42"}
    assert len(await published(ctx)) == 2  # one rotation made both
    async with ctx.reading() as session:
        stored = list(await session.scalars(select(SigningKey.private_key)))
    assert all("PRIVATE KEY" not in sealed for sealed in stored)  # sealed at rest


async def test_a_rotation_publishes_before_it_signs_and_keeps_the_old_key_published(
    services_ctx: ServiceContext,
) -> None:
    ctx = services_ctx
    settings = ctx.settings
    old = await signing_keys.signer(ctx)
    made = await signing_keys.rotate(ctx)
    new = next(key.kid for key in made if key.alg == "RS256")
    assert new in await published(ctx) and old.kid in await published(ctx)
    assert (await signing_keys.signer(ctx)).kid == old.kid  # not yet: caches lag
    await travel(ctx, settings.OIDC_KEY_PUBLISH_AHEAD + 1)
    assert (await signing_keys.signer(ctx)).kid == new
    assert old.kid in await published(ctx)  # its tokens are still out there
    lifetime = max(settings.OIDC_ID_TOKEN_LIFETIME, settings.OIDC_ACCESS_TOKEN_LIFETIME)
    await travel(ctx, lifetime)
    assert old.kid not in await published(ctx)
    assert new in await published(ctx)


async def test_a_key_sealed_under_another_secret_says_what_to_do(
    services_ctx: ServiceContext,
) -> None:
    ctx = services_ctx
    await signing_keys.signer(ctx)
    async with ctx.unit_of_work() as session:
        await session.execute(update(SigningKey).values(private_key="not sealed by us"))
    with pytest.raises(RuntimeError, match="oidc keys rotate"):
        await signing_keys.signer(ctx)
    with pytest.raises(ValueError, match="RS256, ES256 only"):
        await signing_keys.signer(ctx, "HS256")
