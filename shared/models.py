"""The service's tables: users, the texts they write, and the email outbox."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db import Base

USERNAME_MAX_LENGTH = 25
EMAIL_MAX_LENGTH = 254  # RFC 5321 path limit
TEXT_TITLE_MAX_LENGTH = 50
TEXT_CONTENT_MAX_LENGTH = 1000
PASSKEY_NAME_MAX_LENGTH = 60
WEBHOOK_URL_MAX_LENGTH = 2000


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


class EmailStatus(enum.StrEnum):
    PENDING = "pending"  # committed, not yet delivered: the worker (or the sweeper) owes it
    SENT = "sent"
    FAILED = "failed"  # permanent failure or attempts exhausted; last_error says why
    SKIPPED = "skipped"  # no longer true when its turn came (e.g. a superseded reset link)


def still_pending(status: ColumnElement[str]) -> ColumnElement[bool]:
    """``status = 'pending'`` for a statement that finds its rows by primary key (a claim, an
    outcome), written so that the planner cannot use it to pick a pending-rows index.

    Given ``status = 'pending'``, the planner may scan the partial index of pending rows and
    filter it by id instead of looking the ids up. With statistics taken before a backlog
    arrived (a queue fills faster than autoanalyze runs) it expects that index to hold a row
    or two, and so scanned all of a 20,000-email backlog for every claim: 4-5 ms for 16 rows
    instead of 0.3 (bench scenario 8 times a claim of 64 there). IS NOT DISTINCT FROM is the
    same test on this NOT NULL column, but not one the planner proves a partial index's
    predicate from, so the primary key is the only index left to it. The rule is checked
    again on the row being updated, as ``=`` is, so a claim still cannot take a row another
    one took meanwhile.
    """
    return status.is_not_distinct_from(EmailStatus.PENDING)


class Email(Base):
    """The transactional outbox: one row per email a committed action caused.

    The row is written in the same transaction as the change that causes it, so an email
    exists exactly when its cause does. Delivery state lives here, not in Redis, which is only
    the fast path for waking the worker.
    """

    __tablename__ = "emails"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(
        String(10), default=EmailStatus.PENDING, server_default=EmailStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    # When the next delivery attempt is due; the sweeper re-enqueues pending rows past it.
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A worker claimed the row for delivery until then (a lease): other runs of its job leave
    # it alone meanwhile, and a claim that outlives a crashed worker simply expires. Claiming
    # is one UPDATE, so no transaction or connection is held while the SMTP server answers.
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What came back after "sent": a bounce (hard or soft) or a complaint, and when.
    bounce: Mapped[str | None] = mapped_column(String(12))
    bounce_detail: Mapped[str | None] = mapped_column(Text)
    bounced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed', 'skipped')", name="status"),
        # The sweeper's query: pending rows by due time. Partial, so it stays small.
        Index(
            "ix_emails_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_emails_failed",
            "created_at",
            postgresql_where=text("status = 'failed'"),
        ),
        Index("ix_emails_user_id", "user_id"),
        # The retention purge of delivered (or skipped) rows, oldest first.
        Index(
            "ix_emails_done_created_at",
            "created_at",
            postgresql_where=text("status IN ('sent', 'skipped')"),
        ),
    )


class WebhookEndpoint(Base):
    """A service subscribed to security events: where to POST them, which types, and the
    secret the deliveries are signed with (Standard Webhooks), stored encrypted with a key
    derived from SECRET_KEY so a copy of the table alone cannot forge deliveries."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    url: Mapped[str] = mapped_column(String(WEBHOOK_URL_MAX_LENGTH))
    # Dotted event types (``user.registered``), or ``*`` for every type.
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(60)))
    secret_encrypted: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookDelivery(Base):
    """The webhook outbox: one row per (event, endpoint), written in the event's own
    transaction, so a delivery exists exactly when its event does. The body is fixed when
    the event happens (a later account deletion does not change what was said); delivery
    state lives here, as the emails' does."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # The stable id receivers deduplicate on (the webhook-id header): the same for every
    # attempt and every endpoint the event goes to.
    message_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(60))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON bytes signed and sent
    status: Mapped[str] = mapped_column(
        String(10), default=EmailStatus.PENDING, server_default=EmailStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Whose event it is (no foreign key: a delivery about an account may outlive it until it
    # is sent; deleting the account deletes its delivered ones).
    user_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        Index(
            "ix_webhook_deliveries_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_webhook_deliveries_failed",
            "created_at",
            postgresql_where=text("status = 'failed'"),
        ),
        Index("ix_webhook_deliveries_endpoint_id", "endpoint_id"),
        Index(
            "ix_webhook_deliveries_user_id",
            "user_id",
            postgresql_where=text("user_id IS NOT NULL"),
        ),
        Index(
            "ix_webhook_deliveries_sent_created_at",
            "created_at",
            postgresql_where=text("status = 'sent'"),
        ),
    )


class Suppression(Base):
    """An address mail is not sent to: it bounced hard, its owner complained, the server
    refused it outright, or it bounced softly too often. Keyed by the lower-cased address
    (what the worker compares a recipient with). Lifting it (its owner, once, or an
    operator) keeps the row with ``lifted_at`` set, so the owner's one lift is remembered."""

    __tablename__ = "suppressions"

    address_key: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), primary_key=True)
    address: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    cause: Mapped[str] = mapped_column(String(20))  # hard_bounce, complaint, rejected, ...
    reason: Mapped[str] = mapped_column(Text)  # what the receiving side said
    email_id: Mapped[int | None] = mapped_column(BigInteger)  # the message that caused it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    owner_lifts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class BounceReport(Base):
    """Something that came back about a message: a delivery status notification, a
    feedback-loop complaint or a provider's event, as received and as understood. What could
    not be understood or matched to a message is kept whole (``raw``) for an operator."""

    __tablename__ = "bounce_reports"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    source: Mapped[str] = mapped_column(String(20))  # smtp, mailgun
    kind: Mapped[str] = mapped_column(String(12))  # dsn, arf, event, unknown
    # hard_bounce, soft_bounce, complaint, delayed, unmatched, unparsed
    outcome: Mapped[str] = mapped_column(String(12))
    email_id: Mapped[int | None] = mapped_column(ForeignKey("emails.id", ondelete="SET NULL"))
    address_key: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    detail: Mapped[str] = mapped_column(Text, default="", server_default="")
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (
        Index("ix_bounce_reports_outcome_received_at", "outcome", "received_at"),
        Index("ix_bounce_reports_address_key_received_at", "address_key", "received_at"),
        Index("ix_bounce_reports_received_at", "received_at"),
    )
