"""username holds, canonical email keys, indexes for the purges

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 08:00:00
"""

from collections.abc import Sequence

import idna
import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _email_key(email: str) -> str:
    """shared.validation.email_key as of this revision (frozen here: a migration must not
    change meaning when the code moves on)."""
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return email.strip().translate(_ASCII_LOWER)
    try:
        domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        domain = domain.translate(_ASCII_LOWER)
    return f"{local.translate(_ASCII_LOWER)}@{domain.lower()}"


def upgrade() -> None:
    op.create_table(
        "username_holds",
        sa.Column("username_key", sa.String(100), nullable=False),
        sa.Column("email_key", sa.String(1016), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username_key", name="pk_username_holds"),
    )
    op.create_index(
        "ix_users_unconfirmed_created_at",
        "users",
        ["created_at"],
        postgresql_where=sa.text("confirmed_at IS NULL"),
    )
    op.create_index(
        "ix_emails_done_created_at",
        "emails",
        ["created_at"],
        postgresql_where=sa.text("status IN ('sent', 'skipped')"),
    )
    # Email keys no longer fold Unicode look-alikes together. The new key folds strictly
    # less than the old one did, so keys that were unique stay unique.
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, email FROM users")).all()
    for user_id, email in rows:
        connection.execute(
            sa.text("UPDATE users SET email_key = :key WHERE id = :id"),
            {"key": _email_key(email), "id": user_id},
        )


def downgrade() -> None:
    op.drop_index("ix_emails_done_created_at", table_name="emails")
    op.drop_index("ix_users_unconfirmed_created_at", table_name="users")
    op.drop_table("username_holds")
