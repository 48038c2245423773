"""Talking to an outside identity provider (the relying party's side of OpenID Connect Core
§3.1, RFC 7636, RFC 9207), over httpx, with joserfc verifying every ID token against the
issuer's published keys. Nothing here decides who is signed in: it returns an
:class:`Identity` (issuer and subject, and what the provider says about the email), or
raises :class:`ProviderDown` (unreachable, timed out, 5xx) or :class:`ProviderRefused` (an
answer that is wrong: a bad token response, an ID token for someone else, ...).

The discovery document and key set are kept per process for KEEP seconds; a token signed
by a key the copy lacks fetches the key set again (at most every REFETCH_EVERY seconds).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from shared.federation import Provider
from shared.services.context import ServiceContext

KEEP = 3600.0
REFETCH_EVERY = 10.0
MEMO = "federation.client"
MAX_BODY = 256 * 1024
ID_TOKEN_ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")


class ProviderDown(Exception):
    """The provider did not answer, or answered with a server error."""


class ProviderRefused(Exception):
    """The provider's answer cannot be accepted (the reason is for logs, not for people)."""


@dataclass(frozen=True, slots=True)
class Identity:
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None = None
    amr: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str | None
    userinfo_endpoint: str | None
    iss_parameter_supported: bool


@dataclass(slots=True)
class _Kept:
    http: httpx.AsyncClient
    metadata: dict[str, tuple[float, Metadata]] = field(default_factory=dict)
    # provider id -> (when fetched, the keys, their ids)
    keys: dict[str, tuple[float, KeySet, frozenset[str]]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def aclose(self) -> None:
        await self.http.aclose()


def _kept(ctx: ServiceContext) -> _Kept:
    kept = ctx.memo.get(MEMO)
    if not isinstance(kept, _Kept):
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(ctx.settings.FEDERATION_TIMEOUT),
            follow_redirects=False,
            headers={"user-agent": "accounts-federation/1", "accept": "application/json"},
        )
        kept = ctx.memo[MEMO] = _Kept(http)
    return kept


async def _call(ctx: ServiceContext, method: str, url: str, **kwargs: Any) -> Any:
    """One call to the provider: its JSON answer; ProviderDown for no answer or a 5xx."""
    try:
        response = await _kept(ctx).http.request(method, url, **kwargs)
    except httpx.HTTPError as error:
        raise ProviderDown(f"{type(error).__name__} calling {url}") from error
    if response.status_code >= 500:
        raise ProviderDown(f"HTTP {response.status_code} from {url}")
    if len(response.content) > MAX_BODY:
        raise ProviderRefused(f"an answer of {len(response.content)} bytes from {url}")
    try:
        body = response.json()
    except ValueError as error:
        raise ProviderRefused(f"not JSON from {url} (HTTP {response.status_code})") from error
    if response.status_code >= 400 or not isinstance(body, (dict, list)):
        error_code = body.get("error") if isinstance(body, dict) else None
        raise ProviderRefused(f"HTTP {response.status_code} from {url}: {error_code}")
    return body


async def metadata(ctx: ServiceContext, provider: Provider) -> Metadata:
    if provider.oauth is not None:
        return Metadata(provider.issuer, provider.oauth.authorization, provider.oauth.token,
                        None, None, False)  # fmt: skip
    kept = _kept(ctx)
    found = kept.metadata.get(provider.id)
    if found is not None and found[0] > time.monotonic():
        return found[1]
    document = await _call(ctx, "GET", f"{provider.issuer}/.well-known/openid-configuration")
    if not isinstance(document, dict) or document.get("issuer") != provider.issuer:
        # OIDC Discovery §4.3: the document must be the issuer's own.
        raise ProviderRefused("the discovery document names another issuer")
    try:
        meta = Metadata(
            issuer=provider.issuer,
            authorization_endpoint=str(document["authorization_endpoint"]),
            token_endpoint=str(document["token_endpoint"]),
            jwks_uri=str(document["jwks_uri"]),
            userinfo_endpoint=document.get("userinfo_endpoint"),
            iss_parameter_supported=bool(
                document.get("authorization_response_iss_parameter_supported")
            ),
        )
    except KeyError as error:
        raise ProviderRefused(f"the discovery document lacks {error}") from error
    kept.metadata[provider.id] = (time.monotonic() + KEEP, meta)
    return meta


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorization_url(
    meta: Metadata, provider: Provider, *, redirect_uri: str, state: str, nonce: str, challenge: str
) -> str:
    query = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri,
        "scope": provider.scopes,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if provider.is_oidc:
        query["nonce"] = nonce
    separator = "&" if "?" in meta.authorization_endpoint else "?"
    return f"{meta.authorization_endpoint}{separator}{urlencode(query)}"


async def exchange(
    ctx: ServiceContext,
    provider: Provider,
    meta: Metadata,
    *,
    code: str,
    redirect_uri: str,
    verifier: str,
) -> dict[str, Any]:
    """The token response for ``code`` (client_secret_basic, RFC 6749 §2.3.1)."""
    answer = await _call(
        ctx,
        "POST",
        meta.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        auth=(provider.client_id, provider.client_secret),
    )
    if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
        raise ProviderRefused("the token response has no access_token")
    return answer


async def _key_set(
    ctx: ServiceContext, provider: Provider, meta: Metadata, kid: str | None
) -> KeySet:
    kept = _kept(ctx)
    assert meta.jwks_uri is not None
    found = kept.keys.get(provider.id)
    now = time.monotonic()
    if found is not None and now - found[0] < KEEP:
        fetched, keys, kids = found
        if kid is None or kid in kids or now - fetched < REFETCH_EVERY:
            return keys  # an unknown kid soon after a fetch: it fails to verify
    async with kept.lock:
        published = await _call(ctx, "GET", meta.jwks_uri)
        try:
            keys = KeySet.import_key_set(published)
        except (JoseError, ValueError, TypeError) as error:
            raise ProviderRefused("the provider's key set cannot be read") from error
        listed = published.get("keys", []) if isinstance(published, dict) else []
        kids = frozenset(str(k.get("kid")) for k in listed if isinstance(k, dict))
        kept.keys[provider.id] = (time.monotonic(), keys, kids)
    return keys


async def verified_id_token(
    ctx: ServiceContext, provider: Provider, meta: Metadata, token: str, *, nonce: str
) -> dict[str, Any]:
    """The ID token's claims, after OIDC Core §3.1.3.7: signed by the issuer's key (never
    ``none``, never a symmetric key), ``iss`` the issuer, ``aud`` this client (``azp`` when
    there are several), not expired, and the ``nonce`` of this very flow."""
    try:
        header = jws.extract_compact(token.encode()).headers()
        keys = await _key_set(ctx, provider, meta, header.get("kid"))
        verified = jwt.decode(token, keys, algorithms=ID_TOKEN_ALGORITHMS)
        jwt.JWTClaimsRegistry(
            leeway=120,
            iss={"essential": True, "value": provider.issuer},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        ).validate(verified.claims)
    except (JoseError, ValueError) as error:
        raise ProviderRefused(f"the ID token does not verify: {error}") from error
    claims = verified.claims
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if provider.client_id not in audiences:
        raise ProviderRefused("the ID token is for another client")
    if len(audiences) > 1 and claims.get("azp") != provider.client_id:
        raise ProviderRefused("the ID token has several audiences and another azp")
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(
        claims["nonce"], nonce
    ):
        raise ProviderRefused("the ID token's nonce is not this flow's")
    return claims


async def identity(
    ctx: ServiceContext, provider: Provider, meta: Metadata, tokens: dict[str, Any], *, nonce: str
) -> Identity:
    """Who the provider says signed in."""
    if provider.oauth is not None:
        return await _github(ctx, provider, str(tokens["access_token"]))
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str):
        raise ProviderRefused("the token response has no id_token")
    claims = await verified_id_token(ctx, provider, meta, id_token, nonce=nonce)
    if "email" not in claims and meta.userinfo_endpoint:
        bearer = {"authorization": f"Bearer {tokens['access_token']}"}
        info = await _call(ctx, "GET", meta.userinfo_endpoint, headers=bearer)
        if isinstance(info, dict) and info.get("sub") == claims["sub"]:
            claims = {**info, **claims}
    email = claims.get("email")
    amr = claims.get("amr")
    return Identity(
        issuer=provider.issuer,
        subject=str(claims["sub"]),
        email=email if isinstance(email, str) and email else None,
        email_verified=claims.get("email_verified") is True,
        name=str(claims["name"]) if isinstance(claims.get("name"), str) else None,
        amr=tuple(str(a) for a in amr) if isinstance(amr, list) else (),
    )


async def _github(ctx: ServiceContext, provider: Provider, access_token: str) -> Identity:
    """GitHub (plain OAuth 2.0): the user's numeric id is the subject; the address is its
    primary one from the emails API, verified as GitHub says."""
    assert provider.oauth is not None
    headers = {"authorization": f"Bearer {access_token}", "accept": "application/vnd.github+json"}
    user = await _call(ctx, "GET", provider.oauth.user, headers=headers)
    emails = await _call(ctx, "GET", provider.oauth.emails, headers=headers)
    return github_identity(provider, user, emails)


def github_identity(provider: Provider, user: Any, emails: Any) -> Identity:
    """GitHub's ``/user`` and ``/user/emails`` answers as an identity."""
    if not isinstance(user, dict) or not isinstance(user.get("id"), int):
        raise ProviderRefused("GitHub's user answer has no id")
    primary = next(
        (e for e in emails if isinstance(e, dict) and e.get("primary")), None
    ) if isinstance(emails, list) else None  # fmt: skip
    return Identity(
        issuer=provider.issuer,
        subject=str(user["id"]),
        email=str(primary["email"]) if primary and primary.get("email") else None,
        email_verified=bool(primary and primary.get("verified") is True),
        name=str(user.get("name") or user.get("login") or "") or None,
    )
