"""provenance: which sign-in added a passkey or turned two-factor on ("this wasn't me" undoes
what the disowned sign-in added)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("passkeys", sa.Column("added_in_session", sa.String(24), nullable=True))
    op.add_column("users", sa.Column("totp_enabled_in_session", sa.String(24), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "totp_enabled_in_session")
    op.drop_column("passkeys", "added_in_session")
