"""The identity provider's tables (OpenID Connect): the keys it signs tokens with, and the
applications (clients) that sign people in through it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, String, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

__all__ = ["Client", "SigningKey"]


class SigningKey(Base):
    """A key tokens are signed with. Published (in the JWKS) from ``created_at``, it signs
    from ``signs_from`` (later, so that relying parties that cache the JWKS have fetched it
    first), until the next key of its algorithm takes over (``retired_at``), and stays
    published until ``published_until``, when every token it signed has expired. The
    private key is sealed with a key derived from SECRET_KEY (shared.sealing)."""

    __tablename__ = "oidc_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)  # the RFC 7638 thumbprint
    alg: Mapped[str] = mapped_column(String(8))  # RS256 or ES256
    private_key: Mapped[str] = mapped_column(Text)  # sealed PKCS#8 PEM
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    signs_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    published_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Client(Base):
    """An application that signs people in through this service (an OAuth 2.0 client). A
    confidential one has a secret, stored as its SHA-256 (a random 256-bit secret needs no
    slow hash: nobody can guess it); a public one (a single-page or native app) has none
    and must use PKCE. Its redirect URIs are matched exactly."""

    __tablename__ = "oidc_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str | None] = mapped_column(String(64))  # None: a public client
    redirect_uris: Mapped[list[str]] = mapped_column(ARRAY(Text))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    grants: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)  # skips the consent page
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
