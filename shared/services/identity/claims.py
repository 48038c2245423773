"""What this provider's tokens say (OpenID Connect Core §2 and §5.1, RFC 9068 §2.2).

* ``sub`` is the account's random ``subject``: stable for the account's life, the same for
  every application, and saying nothing about the account (not its id, not its address).
* ``amr`` and ``auth_time`` come from the sign-in (RFC 8176 values, shared.assurance);
  ``acr`` says whether it was multi-factor: :data:`ACR_MULTI_FACTOR` or
  :data:`ACR_SINGLE_FACTOR`.
* ``sid`` is the sign-in's public id (the back-channel logout names it); ``gid`` names the
  grant in access tokens, so that introspection and userinfo can tell it has ended.
* ``email``, ``email_verified`` (``email`` scope) and ``preferred_username`` (``profile``)
  come by scope.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.assurance import is_multi_factor
from shared.models import Client, Grant, SignInSession, User
from shared.services.context import ServiceContext

ACR_SINGLE_FACTOR = "urn:accounts:acr:single-factor"
ACR_MULTI_FACTOR = "urn:accounts:acr:multi-factor"
ACR_VALUES = (ACR_SINGLE_FACTOR, ACR_MULTI_FACTOR)
CLAIMS = (
    "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "sid", "azp",
    "email", "email_verified", "preferred_username", "name",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a token is about, and how they signed in."""

    subject: str
    email: str
    email_verified: bool
    username: str
    amr: tuple[str, ...]
    auth_time: datetime
    sid: str
    grant_id: str

    @classmethod
    def of(cls, user: User, sign_in: SignInSession, grant: Grant) -> Subject:
        return cls(
            subject=str(user.subject),
            email=user.email,
            email_verified=user.confirmed_at is not None,
            username=user.username,
            amr=tuple(sign_in.amr),
            auth_time=sign_in.authenticated_at,
            sid=sign_in.public_id,
            grant_id=grant.id,
        )

    @property
    def acr(self) -> str:
        return ACR_MULTI_FACTOR if is_multi_factor(self.amr) else ACR_SINGLE_FACTOR


def by_scope(subject: Subject, scopes: list[str]) -> dict[str, Any]:
    """The claims about the person that ``scopes`` release (OIDC Core §5.4)."""
    released: dict[str, Any] = {"sub": subject.subject}
    if "email" in scopes:
        released["email"] = subject.email
        released["email_verified"] = subject.email_verified
    if "profile" in scopes:
        released["preferred_username"] = subject.username
        released["name"] = subject.username
    return released


def id_token(
    ctx: ServiceContext,
    client: Client,
    subject: Subject,
    scopes: list[str],
    nonce: str | None,
) -> dict[str, Any]:
    now = int(time.time())
    token: dict[str, Any] = {
        **by_scope(subject, scopes),
        "iss": ctx.settings.base_url,
        "aud": client.client_id,
        "azp": client.client_id,
        "iat": now,
        "exp": now + ctx.settings.OIDC_ID_TOKEN_LIFETIME,
        "auth_time": int(subject.auth_time.timestamp()),
        "amr": list(subject.amr),
        "acr": subject.acr,
        "sid": subject.sid,
    }
    if nonce is not None:
        token["nonce"] = nonce
    return token


def access_token(
    ctx: ServiceContext, client: Client, subject: Subject, scopes: list[str]
) -> dict[str, Any]:
    """RFC 9068 §2.2: ``iss``, ``exp``, ``aud``, ``sub``, ``client_id``, ``iat``, ``jti``,
    with ``scope``, ``auth_time``, ``acr`` and ``amr``. The audience is the client (this
    provider has no resource indicators, RFC 8707); resource servers check ``client_id``
    and ``scope`` too."""
    return {
        **_access(ctx, client, subject.subject, scopes),
        "auth_time": int(subject.auth_time.timestamp()),
        "acr": subject.acr,
        "amr": list(subject.amr),
        "sid": subject.sid,
        "gid": subject.grant_id,
    }


def service_access_token(ctx: ServiceContext, client: Client, scopes: list[str]) -> dict[str, Any]:
    """A ``client_credentials`` token: about the client itself (``sub`` is its id, RFC
    9068 §2.2)."""
    return _access(ctx, client, client.client_id, scopes)


def _access(ctx: ServiceContext, client: Client, sub: str, scopes: list[str]) -> dict[str, Any]:
    """What every access token says (RFC 9068 §2.2's required claims, and the scope)."""
    now = int(time.time())
    return {
        "iss": ctx.settings.base_url,
        "sub": sub,
        "aud": client.client_id,
        "client_id": client.client_id,
        "iat": now,
        "exp": now + ctx.settings.OIDC_ACCESS_TOKEN_LIFETIME,
        "jti": secrets.token_urlsafe(16),
        "scope": " ".join(scopes),
    }
