"""languages: each account's language and time zone; each email's language of its cause.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding them rewrites nothing, and an account that never chose
    # follows its browser (pages) and the request that caused the email (emails).
    op.add_column("users", sa.Column("language", sa.String(16)))
    op.add_column("users", sa.Column("time_zone", sa.String(64)))
    op.add_column("emails", sa.Column("locale", sa.String(16)))


def downgrade() -> None:
    op.drop_column("emails", "locale")
    op.drop_column("users", "time_zone")
    op.drop_column("users", "language")
