"""bounces: outcomes on outbox rows, bounce reports, the suppression list

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("emails", sa.Column("bounce", sa.String(12), nullable=True))
    op.add_column("emails", sa.Column("bounce_detail", sa.Text(), nullable=True))
    op.add_column("emails", sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "suppressions",
        sa.Column("address_key", sa.String(254), nullable=False),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("cause", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("email_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("owner_lifts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("address_key", name="pk_suppressions"),
    )
    op.create_table(
        "bounce_reports",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("email_id", sa.BigInteger(), nullable=True),
        sa.Column("address_key", sa.String(254), nullable=True),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["email_id"],
            ["emails.id"],
            name="fk_bounce_reports_email_id_emails",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bounce_reports"),
    )
    op.create_index(
        "ix_bounce_reports_outcome_received_at", "bounce_reports", ["outcome", "received_at"]
    )
    op.create_index(
        "ix_bounce_reports_address_key_received_at",
        "bounce_reports",
        ["address_key", "received_at"],
    )
    op.create_index("ix_bounce_reports_received_at", "bounce_reports", ["received_at"])


def downgrade() -> None:
    op.drop_table("bounce_reports")
    op.drop_table("suppressions")
    op.drop_column("emails", "bounced_at")
    op.drop_column("emails", "bounce_detail")
    op.drop_column("emails", "bounce")
