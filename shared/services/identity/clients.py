"""The applications that sign people in through this service (OAuth 2.0 / OpenID Connect
clients), as the operator registers them: exact redirect URIs, the scopes and grants each
may use, a confidential one's secret (shown once, stored as its SHA-256), a public one's none
(it must use PKCE), and whether it is first-party (no consent page)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from shared.models import Client
from shared.services.context import ServiceContext
from shared.validation import InvalidInput, check_redirect_uri

SCOPES = ("openid", "profile", "email", "offline_access")
GRANTS = ("authorization_code", "refresh_token", "client_credentials")
DEFAULT_SCOPES = ("openid", "profile", "email")
DEFAULT_GRANTS = ("authorization_code", "refresh_token")
NAME_MAX_LENGTH = 100


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Registered:
    client: Client
    secret: str | None  # shown once; None for a public client


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """What the operator asks for; :func:`add` checks it (every problem at once)."""

    name: str
    redirect_uris: Sequence[str]
    public: bool = False
    scopes: Sequence[str] = DEFAULT_SCOPES
    grants: Sequence[str] = DEFAULT_GRANTS
    backchannel_logout_uri: str | None = None
    first_party: bool = False
    post_logout_redirect_uris: Sequence[str] = ()


def _checked(spec: ClientSpec) -> ClientSpec:
    problems: list[str] = []
    name = spec.name.strip()
    if not name or len(name) > NAME_MAX_LENGTH:
        problems.append(f"a name of 1 to {NAME_MAX_LENGTH} characters")
    uris = []
    for uri in spec.redirect_uris:
        try:
            uris.append(check_redirect_uri(uri, public=spec.public))
        except ValueError as error:
            problems.append(f"{uri!r}: {error}")
    if not uris and not set(spec.grants) <= {"client_credentials"}:
        problems.append("at least one redirect URI (the authorization code flow needs one)")
    unknown = sorted(set(spec.scopes) - set(SCOPES)) + sorted(set(spec.grants) - set(GRANTS))
    if unknown:
        problems.append(f"unknown scopes or grants: {', '.join(unknown)}")
    if spec.public and "client_credentials" in spec.grants:
        problems.append("a public client has no secret, so no client_credentials grant")
    if spec.backchannel_logout_uri is not None:
        try:
            check_redirect_uri(spec.backchannel_logout_uri, public=False)
        except ValueError as error:
            problems.append(f"back-channel logout URI: {error}")
    after_logout = []
    for uri in spec.post_logout_redirect_uris:
        try:
            after_logout.append(check_redirect_uri(uri, public=spec.public))
        except ValueError as error:
            problems.append(f"post-logout redirect URI {uri!r}: {error}")
    if problems:
        raise InvalidInput("client", "; ".join(problems))
    return ClientSpec(
        name=name,
        redirect_uris=list(dict.fromkeys(uris)),
        public=spec.public,
        scopes=list(dict.fromkeys(spec.scopes)),
        grants=list(dict.fromkeys(spec.grants)),
        backchannel_logout_uri=spec.backchannel_logout_uri,
        first_party=spec.first_party,
        post_logout_redirect_uris=list(dict.fromkeys(after_logout)),
    )


async def add(ctx: ServiceContext, spec: ClientSpec) -> Registered:
    """Register a client; its secret (confidential clients) is in the answer, once."""
    checked = _checked(spec)
    secret = None if checked.public else secrets.token_urlsafe(32)
    client = Client(
        client_id=secrets.token_urlsafe(18),
        name=checked.name,
        secret_hash=_digest(secret) if secret is not None else None,
        redirect_uris=list(checked.redirect_uris),
        scopes=list(checked.scopes),
        grants=list(checked.grants),
        backchannel_logout_uri=checked.backchannel_logout_uri,
        first_party=checked.first_party,
        post_logout_redirect_uris=list(checked.post_logout_redirect_uris),
    )
    async with ctx.unit_of_work() as session:
        session.add(client)
    return Registered(client, secret)


async def listed(ctx: ServiceContext) -> list[Client]:
    async with ctx.reading() as session:
        return list(await session.scalars(select(Client).order_by(Client.created_at)))


async def by_id(ctx: ServiceContext, client_id: str) -> Client | None:
    if not client_id or len(client_id) > 64:
        return None
    async with ctx.reading() as session:
        return await session.get(Client, client_id)


async def remove(ctx: ServiceContext, client_id: str) -> bool:
    async with ctx.unit_of_work() as session:
        gone = await session.scalar(
            delete(Client).where(Client.client_id == client_id).returning(Client.client_id)
        )
    return gone is not None


async def rotate_secret(ctx: ServiceContext, client_id: str) -> str | None:
    """A new secret for a confidential client (the old one stops working at once); None
    for a public client or an unknown id."""
    secret = secrets.token_urlsafe(32)
    async with ctx.unit_of_work() as session:
        changed = await session.scalar(
            update(Client)
            .where(Client.client_id == client_id, Client.secret_hash.is_not(None))
            .values(secret_hash=_digest(secret))
            .returning(Client.client_id)
        )
    return secret if changed is not None else None


def secret_matches(client: Client, secret: str) -> bool:
    """Whether ``secret`` is the confidential client's (compared in constant time)."""
    if client.secret_hash is None or not secret:
        return False
    return hmac.compare_digest(client.secret_hash, _digest(secret))
