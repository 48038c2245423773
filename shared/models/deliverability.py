"""What comes back after sending: the suppression list and the bounce reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.models.limits import (
    EMAIL_MAX_LENGTH,
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
