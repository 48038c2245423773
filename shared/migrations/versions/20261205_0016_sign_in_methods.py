"""sign-in methods: each sign-in records how it was made (RFC 8176 values) and when its person
last proved who they are. Sign-ins made before this revision have no methods on record (an
empty list, which the assurance rule counts as nothing) and were authenticated when created.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 21:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "sessions",
        sa.Column(
            "amr", postgresql.ARRAY(sa.String(8)), nullable=False, server_default=sa.text("'{}'")
        ),
    )
    op.add_column(
        "sessions",
        sa.Column(
            "authenticated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
    )
    op.execute("UPDATE sessions SET authenticated_at = created_at")


def downgrade() -> None:
    op.drop_column("sessions", "authenticated_at")
    op.drop_column("sessions", "amr")
