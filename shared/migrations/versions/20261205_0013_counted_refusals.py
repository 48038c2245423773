"""counted refusals: failed and held-back sign-ins are one security event per account, kind
and window, with a count, instead of a row each (strangers cannot grow the table)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "security_events", sa.Column("window_start", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "security_events",
        sa.Column("attempts", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.add_column(
        "security_events", sa.Column("last_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "uq_security_events_window",
        "security_events",
        ["user_id", "kind", "window_start"],
        unique=True,
        postgresql_where=sa.text("window_start IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_security_events_window", table_name="security_events")
    op.drop_column("security_events", "last_at")
    op.drop_column("security_events", "attempts")
    op.drop_column("security_events", "window_start")
