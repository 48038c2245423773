"""The token endpoint's use cases (RFC 6749 §3.2, OpenID Connect Core §3.1.3): exchange a code
(with its PKCE verifier), rotate a refresh token, or answer a service for itself
(``client_credentials``). Each checks and records in one transaction, holding the row it
consumes; the tokens are signed after it commits.

* A code is single use: the second exchange revokes its grant, and with it every token the
  first one issued (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
* PKCE (RFC 7636) is checked whenever the request had a challenge; a verifier without one is
  refused (a downgrade: RFC 9700 §4.8.2).
* A refresh token rotates at each use; a used one presented again revokes the family
  (RFC 9700 §4.14.2): either the application or a thief holds a stolen copy, and the server
  cannot tell which.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Client, Grant, RefreshToken, SignInSession, User
from shared.services.context import ServiceContext
from shared.services.identity import claims, clients, signed
from shared.services.identity.authorize import code_digest

VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 §4.1
SERVICE_SCOPES_EXCLUDED = frozenset({"openid", "offline_access"})  # need a person


class TokenError(Exception):
    """An OAuth error answer (RFC 6749 §5.2): ``error`` and a description; 401 for a client
    that failed to authenticate, else 400."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status


def invalid_grant(description: str) -> TokenError:
    return TokenError("invalid_grant", description)


async def authenticate(
    ctx: ServiceContext, client_id: str, secret: str | None, *, need_secret: bool = False
) -> Client:
    """The client making the request: a confidential one must show its secret (basic or
    post, RFC 6749 §2.3.1), a public one only names itself. ``need_secret``: the endpoint
    serves confidential clients only (introspection, client_credentials)."""
    client = await clients.by_id(ctx, client_id)
    if client is None:
        raise TokenError("invalid_client", "unknown client or wrong secret", 401)
    if client.secret_hash is not None:
        if secret is None or not clients.secret_matches(client, secret):
            raise TokenError("invalid_client", "unknown client or wrong secret", 401)
    elif need_secret:
        raise TokenError("invalid_client", "a public client cannot use this", 401)
    elif secret:
        raise TokenError("invalid_client", "a public client has no secret", 401)
    return client


@dataclass(frozen=True, slots=True)
class Issued:
    """The token response (RFC 6749 §5.1, OIDC Core §3.1.3.3)."""

    access_token: str
    expires_in: int
    scope: str
    id_token: str | None = None
    refresh_token: str | None = None

    def as_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.id_token is not None:
            answer["id_token"] = self.id_token
        if self.refresh_token is not None:
            answer["refresh_token"] = self.refresh_token
        return answer


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _pkce_matches(verifier: str, challenge: str) -> bool:
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return hmac.compare_digest(computed.decode(), challenge)


async def revoke_grant(session: AsyncSession, grant_id: str, why: str) -> None:
    await session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_why=why)
    )


@dataclass(frozen=True, slots=True)
class _Prepared:
    subject: claims.Subject
    scopes: list[str]
    refresh_token: str | None
    nonce: str | None


async def exchange_code(
    ctx: ServiceContext, client: Client, code: str, redirect_uri: str, verifier: str | None
) -> Issued:
    if not code or len(code) > 128:
        raise invalid_grant("the code is not valid")
    async with ctx.unit_of_work() as session:
        prepared = await _consume_code(session, client, code, redirect_uri, verifier)
    return await _issue(ctx, client, prepared)


async def _issue(ctx: ServiceContext, client: Client, prepared: _Prepared | TokenError) -> Issued:
    if isinstance(prepared, TokenError):
        raise prepared  # after the commit: a replay's revocation is kept
    return await _tokens(
        ctx, client, prepared.subject, prepared.scopes, prepared.refresh_token,
        nonce=prepared.nonce,
    )  # fmt: skip


async def _consume_code(
    session: AsyncSession, client: Client, code: str, redirect_uri: str, verifier: str | None
) -> _Prepared | TokenError:
    grant = await session.scalar(
        select(Grant).where(Grant.code_hash == code_digest(code)).with_for_update()
    )
    if grant is None or grant.client_id != client.client_id:
        raise invalid_grant("the code is not valid")
    if grant.code_used_at is not None:
        # Committed, then refused: the revocation must outlive the refusal.
        await revoke_grant(session, grant.id, "code used twice")
        return invalid_grant("the code was already used: what it issued is revoked")
    if grant.code_expires_at < datetime.now(UTC):
        raise invalid_grant("the code has expired")
    if grant.revoked_at is not None:
        raise invalid_grant("the code is not valid")
    if redirect_uri != grant.redirect_uri:
        raise invalid_grant("redirect_uri is not the one the code was sent to")
    if grant.code_challenge is not None:
        if verifier is None or not VERIFIER.match(verifier):
            raise invalid_grant("a code_verifier (RFC 7636) is required")
        if not _pkce_matches(verifier, grant.code_challenge):
            raise invalid_grant("the code_verifier does not match the code_challenge")
    elif verifier is not None:
        raise invalid_grant("code_verifier sent, but the request had no code_challenge")
    live = await _live_sign_in(session, grant)
    if live is None:
        raise invalid_grant("the sign-in that made this code has ended")
    user, sign_in = live
    grant.code_used_at = grant.last_used_at = datetime.now(UTC)
    refresh = await _new_refresh_token(session, client, grant)
    subject = claims.Subject.of(user, sign_in, grant)
    return _Prepared(subject, grant.scopes, refresh, grant.nonce)


async def refresh(ctx: ServiceContext, client: Client, token: str, scope: str | None) -> Issued:
    if "refresh_token" not in client.grants:
        raise TokenError("unauthorized_client", "this client may not use refresh tokens")
    if not token or len(token) > 128:
        raise invalid_grant("the refresh token is not valid")
    async with ctx.unit_of_work() as session:
        prepared = await _rotate(session, client, token, scope)
    return await _issue(ctx, client, prepared)


async def _rotate(
    session: AsyncSession, client: Client, token: str, scope: str | None
) -> _Prepared | TokenError:
    row = (
        await session.execute(
            select(RefreshToken, Grant)
            .join(Grant, Grant.id == RefreshToken.grant_id)
            .where(RefreshToken.token_hash == _digest(token))
            .with_for_update()
        )
    ).first()
    if row is None or row[1].client_id != client.client_id:
        raise invalid_grant("the refresh token is not valid")
    used, grant = row
    if used.used_at is not None:
        await revoke_grant(session, grant.id, "refresh token used twice")
        return invalid_grant("the refresh token was already used: its family is revoked")
    if grant.revoked_at is not None or grant.expires_at < datetime.now(UTC):
        raise invalid_grant("the refresh token has been revoked or has expired")
    live = await _live_sign_in(session, grant)
    if live is None:
        raise invalid_grant("the sign-in that issued this token has ended")
    scopes = grant.scopes
    if scope is not None:
        asked = scope.split()
        if not set(asked) <= set(grant.scopes):
            raise TokenError("invalid_scope", "more than the original grant")
        scopes = list(dict.fromkeys(asked))
    user, sign_in = live
    used.used_at = grant.last_used_at = datetime.now(UTC)
    successor = await _new_refresh_token(session, client, grant)
    return _Prepared(claims.Subject.of(user, sign_in, grant), scopes, successor, None)


async def for_service(ctx: ServiceContext, client: Client, scope: str | None) -> Issued:
    """``client_credentials`` (RFC 6749 §4.4): an access token about the client itself."""
    if "client_credentials" not in client.grants or client.secret_hash is None:
        raise TokenError("unauthorized_client", "this client may not use client_credentials")
    allowed = [s for s in client.scopes if s not in SERVICE_SCOPES_EXCLUDED]
    scopes = allowed if scope is None else list(dict.fromkeys(scope.split()))
    if not set(scopes) <= set(allowed):
        raise TokenError("invalid_scope", f"this client may ask for: {' '.join(allowed)}")
    access = claims.service_access_token(ctx, client, scopes)
    token = await signed.sign(ctx, access, typ="at+jwt")
    lifetime = ctx.settings.OIDC_ACCESS_TOKEN_LIFETIME
    return Issued(access_token=token, expires_in=lifetime, scope=" ".join(scopes))


async def _live_sign_in(session: AsyncSession, grant: Grant) -> tuple[User, SignInSession] | None:
    """The grant's account and sign-in, if the sign-in is not revoked and (unless the grant
    is for offline access) not expired."""
    row = (
        await session.execute(
            select(User, SignInSession)
            .join(SignInSession, SignInSession.user_id == User.id)
            .where(SignInSession.id == grant.session_id, SignInSession.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    user, sign_in = row
    if not grant.offline and sign_in.expires_at < datetime.now(UTC):
        return None
    return user, sign_in


async def _new_refresh_token(session: AsyncSession, client: Client, grant: Grant) -> str | None:
    if "refresh_token" not in client.grants:
        return None
    token = secrets.token_urlsafe(32)
    session.add(RefreshToken(token_hash=_digest(token), grant_id=grant.id))
    return token


async def _tokens(
    ctx: ServiceContext,
    client: Client,
    subject: claims.Subject,
    scopes: list[str],
    refresh_token: str | None,
    *,
    nonce: str | None,
) -> Issued:
    access = await signed.sign(ctx, claims.access_token(ctx, client, subject, scopes), typ="at+jwt")
    id_token = None
    if "openid" in scopes:
        id_token = await signed.sign(ctx, claims.id_token(ctx, client, subject, scopes, nonce))
    return Issued(
        access_token=access,
        expires_in=ctx.settings.OIDC_ACCESS_TOKEN_LIFETIME,
        scope=" ".join(scopes),
        id_token=id_token,
        refresh_token=refresh_token,
    )
