"""The accounts' tables: users, their sign-ins, security events, passkeys, recovery codes,
username holds, and the Texts they write."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db import Base
from shared.models.limits import (
    EMAIL_MAX_LENGTH,
    PASSKEY_NAME_MAX_LENGTH,
    TEXT_CONTENT_MAX_LENGTH,
    TEXT_TITLE_MAX_LENGTH,
    USERNAME_MAX_LENGTH,
)


class User(Base):
    """An account. ``username_key`` and ``email_key`` are the normalised forms that uniqueness
    and look-ups use, so that case or Unicode variants cannot impersonate an existing name."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    username_key: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH * 4), unique=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    email_key: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH * 4), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Part of every session's auth_id: bumping it ends the sessions that carry the old value.
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    # Bumped whenever a new confirmation or reset link is issued, so only the latest link works.
    confirm_generation: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    reset_generation: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Two-factor sign-in (TOTP): the secret, encrypted with a key derived from SECRET_KEY;
    # the pending one while enrolling; the last accepted time step (no replay).
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_pending_secret: Mapped[str | None] = mapped_column(String(255))
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The public id of the sign-in that turned it on: "this wasn't me" about that sign-in
    # turns it off again.
    totp_enabled_in_session: Mapped[str | None] = mapped_column(String(24))
    # An address change waiting for confirmation from the new address; the generation makes
    # the latest request's link the only one that works.
    pending_email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    email_change_generation: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Who the account is to the applications it signs in to (the ID token's "sub"): random,
    # so it says nothing (not how many accounts there are), and never reused or changed.
    subject: Mapped[str] = mapped_column(
        Uuid(as_uuid=False),
        unique=True,
        default=lambda: str(uuid.uuid4()),
        server_default=text("gen_random_uuid()"),
    )

    # The language pages and emails speak to this account (shared.i18n), and the zone its
    # times are shown in; None: what its browser says.
    language: Mapped[str | None] = mapped_column(String(16))
    time_zone: Mapped[str | None] = mapped_column(String(64))

    texts: Mapped[list[TextPost]] = relationship(back_populates="author")

    __table_args__ = (
        # The purge of accounts never confirmed: small, since confirmed rows are left out.
        Index(
            "ix_users_unconfirmed_created_at",
            "created_at",
            postgresql_where=text("confirmed_at IS NULL"),
        ),
    )

    def __repr__(self) -> str:
        return f"User({self.username!r}, {self.email!r})"


class SignInSession(Base):
    """One sign-in: its id is what the signed session cookie carries. The cookie works
    while the record is neither revoked nor expired, so ending a session (sign-out, "sign
    out everywhere else", a password change) is one row update, effective on the cookie's
    next request."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # random, unguessable
    # What pages and the API call it: the id itself stays in the signed cookie only.
    public_id: Mapped[str] = mapped_column(String(24))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Touched at most every few minutes, not on every request.
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    client_address: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512))
    device: Mapped[str] = mapped_column(String(120))  # the user agent in words: "Chrome on Linux"
    # How it was made (RFC 8176 values, shared.assurance) and when its person last proved who
    # they are: what the assurance rule and re-authentication read, and what an identity
    # provider tells the services it signs people in to.
    amr: Mapped[list[str]] = mapped_column(ARRAY(String(8)), server_default="{}")
    authenticated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        Index("ix_sessions_user_id", "user_id"),
        Index("ix_sessions_expires_at", "expires_at"),
    )


class SecurityEvent(Base):
    """Something security-relevant that happened to an account, written in the same
    transaction as the change it describes. No secrets, no tokens: the kind, when, from
    where (address and browser in words) and a small payload."""

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    client_address: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # Refused attempts (failed and held-back sign-ins) are counted, not listed: one row per
    # account, kind and REFUSED_WINDOW, from ``window_start``, with how many and when the last.
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    last_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_security_events_user_id_id", "user_id", "id"),
        Index("ix_security_events_created_at", "created_at"),
        Index(
            "uq_security_events_window",
            "user_id",
            "kind",
            "window_start",
            unique=True,
            postgresql_where=text("window_start IS NOT NULL"),
        ),
    )


class Passkey(Base):
    """A WebAuthn credential registered by the account's owner (a discoverable one: it
    signs in without a username typed)."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(PASSKEY_NAME_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The public id of the sign-in that added it: "this wasn't me" about that sign-in
    # removes it.
    added_in_session: Mapped[str | None] = mapped_column(String(24))

    __table_args__ = (Index("ix_passkeys_user_id", "user_id"),)


class LoginCode(Base):
    """The account's current sign-in code (one at most: a newer request replaces it). The code
    itself is stored nowhere: it is derived from the secret key, the account, the generation
    and the salt (``shared.tokens.login_code``), by the worker when it sends it and by the web
    when it checks it. Using it deletes the row; so does running out of tries."""

    __tablename__ = "login_codes"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    generation: Mapped[int] = mapped_column(Integer)
    salt: Mapped[str] = mapped_column(String(32))
    # SHA-256 of the secret the requesting browser keeps: the emailed link signs in there only.
    browser: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TrustedBrowser(Base):
    """A browser its owner asked to remember on the second step of a sign-in: while it is
    trusted, a sign-in from it to this account needs one factor. ``device_id`` is the id in the
    browser's signed device cookie."""

    __tablename__ = "trusted_browsers"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(String(120))  # "Firefox on Windows"
    client_address: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_trusted_browsers_user_device", "user_id", "device_id", unique=True),
    )


class RecoveryCode(Base):
    """A single-use two-factor recovery code, stored as a SHA-256 digest (the codes are
    random and long, so no slow hash is needed)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_recovery_codes_user_id", "user_id"),)


class UsernameHold(Base):
    """A username held by a registration until ``expires_at``, whether or not its address
    already had an account: a follow-up registration with another address sees the name
    taken either way, so it cannot tell which (an unconfirmed account is forgotten when its
    hold ends)."""

    __tablename__ = "username_holds"

    username_key: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH * 4), primary_key=True)
    # The address that registered with it: registering again with the same name and
    # address (the first email lost?) is allowed, whatever became of the first attempt.
    email_key: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH * 4))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TextPost(Base):
    """A short titled text written by a user, listed on the home page."""

    __tablename__ = "texts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    title: Mapped[str] = mapped_column(String(TEXT_TITLE_MAX_LENGTH))
    content: Mapped[str] = mapped_column(String(TEXT_CONTENT_MAX_LENGTH))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    author: Mapped[User] = relationship(back_populates="texts")

    __table_args__ = (Index("ix_texts_created_at", "created_at"),)
