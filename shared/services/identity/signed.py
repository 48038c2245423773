"""Signing this provider's tokens and verifying the ones that come back (joserfc: no
signature or JWK code here).

Unsealing a private key and importing it costs more than signing with it, and the keys
change once in a rotation, so a process keeps them for KEEP seconds (a rotation in this
process forgets them at once; one in another process is picked up within KEEP, while the
outgoing key may still sign: it stays published long after). Verification keys are the
published set, fetched again when a token names a key the copy lacks (at most every
REFETCH_EVERY seconds, so tokens with made-up key ids cannot hammer the database).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from shared.services.context import ServiceContext
from shared.services.identity import keys
from shared.services.identity.keys import Signer

KEEP = 30.0
REFETCH_EVERY = 1.0
ALGORITHMS = keys.ALGORITHMS


@dataclass(slots=True)
class _Kept:
    signers: dict[str, tuple[float, Signer]] = field(default_factory=dict)
    key_set: KeySet | None = None
    kids: frozenset[str] = frozenset()
    fetched: float = 0.0
    # One fetch at a time: the first burst of requests after a start (or after KEEP) would
    # otherwise each unseal the key, a database round trip and an import apiece.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _kept(ctx: ServiceContext) -> _Kept:
    kept = ctx.memo.get(keys.MEMO)
    if not isinstance(kept, _Kept):
        kept = ctx.memo[keys.MEMO] = _Kept()
    return kept


async def signer(ctx: ServiceContext, alg: str = "RS256") -> Signer:
    kept = _kept(ctx)
    found = kept.signers.get(alg)
    if found is not None and found[0] > time.monotonic():
        return found[1]
    async with kept.lock:
        found = kept.signers.get(alg)
        if found is not None and found[0] > time.monotonic():
            return found[1]  # fetched while this one waited
        fresh = await keys.signer(ctx, alg)
        kept.signers[alg] = (time.monotonic() + KEEP, fresh)
    return fresh


async def sign(ctx: ServiceContext, claims: dict[str, Any], *, typ: str = "JWT") -> str:
    """``claims`` as a JWS with the RS256 key that signs now (``typ`` in the header:
    ``at+jwt`` for access tokens, RFC 9068 §2.1; ``logout+jwt`` for logout tokens)."""
    key = await signer(ctx, "RS256")
    return jwt.encode({"alg": key.alg, "kid": key.kid, "typ": typ}, claims, key.key)


class NotOurs(Exception):
    """Not a token this provider signed (or no longer verifiable: its key is gone)."""


async def _key_set(ctx: ServiceContext, kid: str | None) -> KeySet:
    kept = _kept(ctx)

    def due() -> bool:
        age = time.monotonic() - kept.fetched
        stale = kept.key_set is None or age > KEEP
        return stale or (kid is not None and kid not in kept.kids and age > REFETCH_EVERY)

    if due():
        async with kept.lock:
            if due():
                published = await keys.key_set(ctx)
                kept.key_set = KeySet.import_key_set(published)  # type: ignore[arg-type]
                kept.kids = frozenset(key["kid"] for key in published["keys"])
                kept.fetched = time.monotonic()
    assert kept.key_set is not None
    return kept.key_set


async def verify(
    ctx: ServiceContext, token: str, *, typ: str, expired_ok: bool = False
) -> dict[str, Any]:
    """The claims of ``token`` if this provider signed it, as a ``typ`` token, for itself
    as issuer, and it has not expired (``expired_ok``: an ``id_token_hint``, which may have,
    OIDC RP-Initiated Logout §2); else :class:`NotOurs`."""
    if not token or len(token) > 8192 or token.count(".") != 2:
        raise NotOurs("not a signed token")
    try:
        header = jws.extract_compact(token.encode()).headers()  # which key, which type
        if str(header.get("typ", "")).lower() != typ:
            raise NotOurs(f"not an {typ} token")
        verified = jwt.decode(token, await _key_set(ctx, header.get("kid")), algorithms=ALGORITHMS)
        if expired_ok:
            if verified.claims.get("iss") != ctx.settings.base_url:
                raise NotOurs("issued by another provider")
        else:
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": ctx.settings.base_url},
                exp={"essential": True},
            ).validate(verified.claims)
    except (JoseError, ValueError) as error:
        raise NotOurs(str(error)) from error
    return verified.claims
