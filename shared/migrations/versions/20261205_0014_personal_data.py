"""personal data: webhook deliveries know whose event they carry (deleting an account
deletes its delivered ones)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("user_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE webhook_deliveries SET user_id = (body::jsonb -> 'data' ->> 'user_id')::bigint "
        "WHERE event_type <> 'user.deleted' AND body::jsonb -> 'data' ->> 'user_id' ~ '^[0-9]+$'"
    )
    op.create_index(
        "ix_webhook_deliveries_user_id",
        "webhook_deliveries",
        ["user_id"],
        postgresql_where=sa.text("user_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_user_id", table_name="webhook_deliveries")
    op.drop_column("webhook_deliveries", "user_id")
