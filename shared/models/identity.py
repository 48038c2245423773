"""The identity provider's tables (OpenID Connect): the keys it signs tokens with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

__all__ = ["SigningKey"]


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
