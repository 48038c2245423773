"""The identity provider's tables (OpenID Connect): the keys it signs tokens with, the
applications (clients) that sign people in through it, what each person let each application
have (consents), what each sign-in through an application issued (grants, with their
authorization code and refresh tokens), and the back-channel logout outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

__all__ = [
    "Client", "Consent", "FederatedIdentity", "Grant", "LogoutDelivery", "RefreshToken",
    "SigningKey",
]  # fmt: skip


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
    # Where RP-initiated logout may send the browser afterwards (matched exactly, too).
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(
        ARRAY(Text), default=list, server_default="{}"
    )
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)  # skips the consent page
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Consent(Base):
    """What a person let an application have: the scopes, remembered so that the consent page
    is shown again only for more (or when the application asks with ``prompt=consent``)."""

    __tablename__ = "oidc_consents"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oidc_clients.client_id", ondelete="CASCADE"), primary_key=True
    )
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Grant(Base):
    """One sign-in to an application through this service: its authorization code (stored as
    a SHA-256, single use, short-lived) and, once the code is exchanged, the family of tokens
    issued from it. It lives while its sign-in does: ending the sign-in (signing out, a
    password change, "this wasn't me" ...) ends the grant. With ``offline_access`` it may
    outlive the sign-in's expiry, never its revocation. A code used twice, or a refresh token
    used after its successor was issued, revokes it (RFC 9700 §2.2.2, §4.14)."""

    __tablename__ = "oidc_grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random; the tokens' "gid"
    client_id: Mapped[str] = mapped_column(ForeignKey("oidc_clients.client_id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # A sign-in's id changes when its credentials do (sessions.rotate): its grants follow it.
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE", onupdate="CASCADE")
    )
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    redirect_uri: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(512))
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    code_challenge: Mapped[str | None] = mapped_column(String(43))
    code_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    code_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_why: Mapped[str | None] = mapped_column(String(60))

    __table_args__ = (
        Index("ix_oidc_grants_user_id", "user_id"),
        Index("ix_oidc_grants_session_id", "session_id"),
        Index("ix_oidc_grants_client_id", "client_id"),
    )


class RefreshToken(Base):
    """A refresh token, as its SHA-256. Using it marks it used and issues its successor; a
    used one presented again is a stolen copy (or the thief's), and revokes its grant."""

    __tablename__ = "oidc_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("oidc_grants.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_oidc_refresh_tokens_grant_id", "grant_id"),)


class LogoutDelivery(Base):
    """The back-channel logout outbox (OpenID Connect Back-Channel Logout 1.0): one row per
    ended sign-in and application that asked to hear of it, written in the transaction that
    ended it; the worker signs the logout token and POSTs it, with the webhooks' guarantees
    (a lease, retries with backoff, failed with the reason)."""

    __tablename__ = "oidc_logout_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oidc_clients.client_id", ondelete="CASCADE"))
    uri: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(36))
    sid: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(10), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        Index(
            "ix_oidc_logout_deliveries_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )


class FederatedIdentity(Base):
    """An account at another identity provider, linked to an account here: (issuer, subject)
    is who the person is there, never their email. Linked only by the owner of the account
    here, proven in the same flow (shared/services/federation.py)."""

    __tablename__ = "federated_identities"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))  # the configured provider's id
    issuer: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(Text)  # what it said when linked, to show
    # The public id of the sign-in that linked it: "this wasn't me" about that sign-in
    # unlinks it again.
    linked_in_session: Mapped[str | None] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("uq_federated_identities_issuer_subject", "issuer", "subject", unique=True),
        Index("ix_federated_identities_user_id", "user_id"),
    )
