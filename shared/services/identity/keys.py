"""The identity provider's signing keys (joserfc): one RS256 key (what OpenID Connect requires
every provider to offer) and one ES256 key signing at a time, and the JSON Web Key Set that
publishes them.

A rotation publishes each algorithm's new key at once and lets it sign only
OIDC_KEY_PUBLISH_AHEAD later (a relying party caching the JWKS for OIDC_JWKS_MAX_AGE has
fetched it by then); the key it replaces signs until that moment and stays published until
every token it signed has expired (the longest token lifetime after it stopped). The private
halves are sealed with a key derived from SECRET_KEY: a copy of the database alone signs
nothing. The first keys are made when first needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc.jwk import ECKey, KeyParameters, RSAKey
from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import SigningKey
from shared.sealing import Sealer
from shared.services.context import ServiceContext

ALGORITHMS = ("RS256", "ES256")
RSA_BITS = 2048

Key = RSAKey | ECKey
MEMO = "identity.keys"  # the process's copy of the keys (shared.services.identity.signed)


def _sealer(ctx: ServiceContext) -> Sealer:
    return Sealer(ctx.secret, "oidc-signing-key")


def _generate(alg: str) -> Key:
    parameters: KeyParameters = {"use": "sig", "alg": alg}
    if alg == "RS256":
        return RSAKey.generate_key(RSA_BITS, parameters, private=True)
    return ECKey.generate_key("P-256", parameters, private=True)


def _lifetime(ctx: ServiceContext) -> timedelta:
    settings = ctx.settings
    longest = max(settings.OIDC_ID_TOKEN_LIFETIME, settings.OIDC_ACCESS_TOKEN_LIFETIME)
    return timedelta(seconds=longest)


async def rotate(ctx: ServiceContext) -> list[SigningKey]:
    """A new key for each algorithm (see the module's description); the new keys."""
    async with ctx.unit_of_work() as session:
        made = await _rotate(session, ctx)
    ctx.memo.pop(MEMO, None)  # this process signs with the new keys as soon as they may
    return made


async def _rotate(session: AsyncSession, ctx: ServiceContext) -> list[SigningKey]:
    # One rotation at a time: two would each retire the same key for a different successor.
    await session.execute(text("LOCK TABLE oidc_signing_keys IN SHARE ROW EXCLUSIVE MODE"))
    now = datetime.now(UTC)
    made = []
    for alg in ALGORITHMS:
        current = await session.scalar(
            select(SigningKey)
            .where(SigningKey.alg == alg, SigningKey.retired_at.is_(None))
            .order_by(SigningKey.signs_from.desc())
            .limit(1)
        )
        # With no key of the algorithm signing now, there is nothing to wait for: it signs
        # at once (the first key, or after keys were lost).
        signing = await _signing(session, alg)
        ahead = ctx.settings.OIDC_KEY_PUBLISH_AHEAD if signing is not None else 0
        signs_from = now + timedelta(seconds=ahead)
        if current is not None:
            current.retired_at = signs_from
            current.published_until = signs_from + _lifetime(ctx)
        key = _generate(alg)
        kid = key.thumbprint()
        record = SigningKey(
            kid=kid,
            alg=alg,
            private_key=_sealer(ctx).seal(key.as_pem(private=True).decode()),
            public_jwk={**key.as_dict(private=False), "kid": kid},
            signs_from=signs_from,
        )
        session.add(record)
        made.append(record)
    await session.flush()
    return made


async def listed(ctx: ServiceContext) -> list[SigningKey]:
    """Every key still published (or signing), newest first."""
    async with ctx.reading() as session:
        return list(await session.scalars(_published().order_by(SigningKey.created_at.desc())))


def _published() -> Any:
    now = datetime.now(UTC)
    return select(SigningKey).where(
        or_(SigningKey.published_until.is_(None), SigningKey.published_until > now)
    )


async def key_set(ctx: ServiceContext) -> dict[str, Any]:
    """The JSON Web Key Set: every published key's public half, with its ``kid``."""
    return {"keys": [key.public_jwk for key in await listed(ctx)]}


@dataclass(frozen=True, slots=True)
class Signer:
    """The key to sign with now: its id (the JWS header's ``kid``) and the key."""

    kid: str
    alg: str
    key: Key


async def signer(ctx: ServiceContext, alg: str = "RS256") -> Signer:
    """The key of ``alg`` that signs now (the first keys are made if there are none)."""
    if alg not in ALGORITHMS:
        raise ValueError(f"no {alg} signing key: {', '.join(ALGORITHMS)} only")
    async with ctx.unit_of_work() as session:
        record = await _signing(session, alg)
        if record is None:
            await _rotate(session, ctx)
            record = await _signing(session, alg)
    assert record is not None, "a rotation makes a key of every algorithm that signs at once"
    pem = _sealer(ctx).open(record.private_key)
    if pem is None:
        raise RuntimeError(
            f"signing key {record.kid} cannot be unsealed (SECRET_KEY changed?): "
            "run `python -m web oidc keys rotate`"
        )
    key: Key = RSAKey.import_key(pem) if alg == "RS256" else ECKey.import_key(pem)
    return Signer(record.kid, alg, key)


async def _signing(session: AsyncSession, alg: str) -> SigningKey | None:
    now = datetime.now(UTC)
    return await session.scalar(
        select(SigningKey)
        .where(
            SigningKey.alg == alg,
            SigningKey.signs_from <= now,
            or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > now),
        )
        .order_by(SigningKey.signs_from.desc())
        .limit(1)
    )
