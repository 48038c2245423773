"""federated identities: accounts at other identity providers linked to accounts here.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federated_identities",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("email", sa.Text()),
        sa.Column("linked_in_session", sa.String(24)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "uq_federated_identities_issuer_subject",
        "federated_identities",
        ["issuer", "subject"],
        unique=True,
    )
    op.create_index("ix_federated_identities_user_id", "federated_identities", ["user_id"])


def downgrade() -> None:
    op.drop_table("federated_identities")
