"""What a token still allows: userinfo (OIDC Core §5.3), introspection (RFC 7662) and
revocation (RFC 7009).

An access token is a signed JWT that resource servers may verify offline until it expires;
here, where the provider can look, it is active only while its grant is (the sign-in that
made it not ended, the grant not revoked, the application not removed) and while it has not
been revoked itself. A revoked access token's ``jti`` is kept in Redis until the token would
have expired anyway, so the list never grows past the tokens still alive.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Client, Grant, RefreshToken, SignInSession, User
from shared.services.context import ServiceContext
from shared.services.identity import claims, signed
from shared.services.identity.tokens import revoke_grant

INACTIVE: dict[str, Any] = {"active": False}


class InvalidToken(Exception):
    """RFC 6750 §3.1 ``invalid_token``: expired, revoked, malformed or not ours."""


def _revoked_key(ctx: ServiceContext, jti: str) -> str:
    return f"{ctx.settings.REDIS_KEY_PREFIX}oidc:revoked-at:{jti}"


async def _grant_of(
    session: AsyncSession, grant_id: str
) -> tuple[Grant, User, SignInSession] | None:
    """The grant, its account and sign-in, while all are live."""
    row = (
        await session.execute(
            select(Grant, User, SignInSession)
            .join(User, User.id == Grant.user_id)
            .join(SignInSession, SignInSession.id == Grant.session_id)
            .where(
                Grant.id == grant_id,
                Grant.revoked_at.is_(None),
                Grant.code_used_at.is_not(None),
                Grant.expires_at > datetime.now(UTC),
                SignInSession.revoked_at.is_(None),
                or_(Grant.offline, SignInSession.expires_at > datetime.now(UTC)),
            )
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


async def _access_claims(ctx: ServiceContext, token: str) -> dict[str, Any] | None:
    """The claims of an access token that is still active, else None."""
    try:
        found = await signed.verify(ctx, token, typ="at+jwt")
    except signed.NotOurs:
        return None
    jti = found.get("jti")
    if not isinstance(jti, str) or await ctx.redis.exists(_revoked_key(ctx, jti)):
        return None
    async with ctx.reading() as session:
        gid = found.get("gid")
        if gid is not None:
            if not isinstance(gid, str) or await _grant_of(session, gid) is None:
                return None
        elif await session.get(Client, found.get("client_id", "")) is None:
            return None
    return found


async def userinfo(ctx: ServiceContext, token: str) -> dict[str, Any]:
    """The claims the access token's scopes release, as the account is now."""
    try:
        found = await signed.verify(ctx, token, typ="at+jwt")
    except signed.NotOurs as error:
        raise InvalidToken(str(error)) from error
    gid, jti = found.get("gid"), found.get("jti")
    if not isinstance(gid, str):
        raise InvalidToken("not a token about a person")
    if not isinstance(jti, str) or await ctx.redis.exists(_revoked_key(ctx, jti)):
        raise InvalidToken("the token has been revoked")
    scopes = str(found.get("scope", "")).split()
    if "openid" not in scopes:
        raise InvalidToken("the token was not issued with the openid scope")
    async with ctx.reading() as session:
        live = await _grant_of(session, gid)
    if live is None:
        raise InvalidToken("the sign-in behind this token has ended")
    grant, user, sign_in = live
    return claims.by_scope(claims.Subject.of(user, sign_in, grant), scopes)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _refresh_row(ctx: ServiceContext, token: str) -> tuple[RefreshToken, Grant] | None:
    if not token or len(token) > 128:
        return None
    async with ctx.reading() as session:
        row = (
            await session.execute(
                select(RefreshToken, Grant)
                .join(Grant, Grant.id == RefreshToken.grant_id)
                .where(RefreshToken.token_hash == _digest(token))
            )
        ).first()
    return None if row is None else (row[0], row[1])


async def introspect(
    ctx: ServiceContext, client: Client, token: str, hint: str | None
) -> dict[str, Any]:
    """RFC 7662 §2.2. Any confidential client (a resource server registered as one) may
    introspect access tokens; a refresh token only by the client it was issued to."""
    kinds = ("access_token", "refresh_token")
    order = kinds[::-1] if hint == "refresh_token" else kinds
    for kind in order:
        if kind == "access_token":
            found = await _access_claims(ctx, token)
            if found is not None:
                keep = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti",
                        "auth_time", "acr", "amr", "sid")  # fmt: skip
                return {"active": True, "token_type": "Bearer",
                        **{k: found[k] for k in keep if k in found}}  # fmt: skip
        else:
            answer = await _introspect_refresh(ctx, client, token)
            if answer is not None:
                return answer
    return INACTIVE


async def _introspect_refresh(
    ctx: ServiceContext, client: Client, token: str
) -> dict[str, Any] | None:
    row = await _refresh_row(ctx, token)
    if row is None or row[1].client_id != client.client_id or row[0].used_at is not None:
        return None
    async with ctx.reading() as session:
        live = await _grant_of(session, row[1].id)
    if live is None:
        return None
    grant, user, _ = live
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": " ".join(grant.scopes),
        "client_id": grant.client_id,
        "sub": str(user.subject),
        "iss": ctx.settings.base_url,
        "exp": int(grant.expires_at.timestamp()),
        "iat": int(row[0].created_at.timestamp()),
    }


async def revoke(ctx: ServiceContext, client: Client, token: str, hint: str | None) -> None:
    """RFC 7009: a refresh token revokes its grant (every token issued from it); an access
    token stops being active here. Tokens that are unknown, not the client's or already
    dead are no error (§2.2: the answer is the same)."""
    row = await _refresh_row(ctx, token)
    if row is not None:
        if row[1].client_id == client.client_id:
            async with ctx.unit_of_work() as session:
                await revoke_grant(session, row[1].id, "revoked by the application")
        return
    try:
        found = await signed.verify(ctx, token, typ="at+jwt")
    except signed.NotOurs:
        return
    jti, exp = found.get("jti"), found.get("exp")
    if found.get("client_id") != client.client_id or not isinstance(jti, str):
        return
    remaining = int(exp) - int(time.time()) if isinstance(exp, int) else 0
    if remaining > 0:
        await ctx.redis.set(_revoked_key(ctx, jti), "1", ex=remaining + 5)
