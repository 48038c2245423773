"""The outboxes: emails and webhook deliveries, written in their cause's transaction and
delivered by the worker; and the endpoints the deliveries go to."""

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
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.models.limits import (
    EMAIL_MAX_LENGTH,
    WEBHOOK_URL_MAX_LENGTH,
)


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
    # The recipient as accounts and the suppression list know it (shared.validation.email_key).
    recipient_key: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH * 4))
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The language of the request that caused it: what the message speaks when its
    # recipient has no account (or none that chose a language).
    locale: Mapped[str | None] = mapped_column(String(16))
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
