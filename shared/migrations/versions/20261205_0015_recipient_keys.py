"""recipient keys: every outbox row knows its recipient by the key accounts use
(shared.validation.email_key), and the suppression list and bounce reports are keyed by it,
so that suppression, accounts and the worker's claim agree on what "the same address" is

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.validation import email_key

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ASCII = "^[[:ascii:]]*$"  # for an ASCII address, email_key is its lower case


def upgrade() -> None:
    op.add_column("emails", sa.Column("recipient_key", sa.String(1016), nullable=True))
    bind = op.get_bind()
    bind.execute(
        sa.text("UPDATE emails SET recipient_key = lower(recipient) WHERE recipient ~ :ascii"),
        {"ascii": ASCII},
    )
    rows = bind.execute(sa.text("SELECT id, recipient FROM emails WHERE recipient_key IS NULL"))
    for email_id, recipient in rows.all():
        bind.execute(
            sa.text("UPDATE emails SET recipient_key = :key WHERE id = :id"),
            {"key": email_key(recipient), "id": email_id},
        )
    op.alter_column("emails", "recipient_key", nullable=False)
    # Non-ASCII addresses' keys change from lower() to email_key (few rows, if any).
    for table, key_column, address_of in (
        ("suppressions", "address_key", "address"),
        ("bounce_reports", "address_key", "address_key"),
    ):
        rows = bind.execute(
            sa.text(
                f"SELECT {key_column}, {address_of} FROM {table} "  # noqa: S608 (constants)
                f"WHERE {key_column} !~ :ascii"
            ),
            {"ascii": ASCII},
        )
        for old, address in rows.all():
            new = email_key(address)
            if table == "suppressions":
                bind.execute(
                    sa.text("DELETE FROM suppressions WHERE address_key = :new AND :new <> :old"),
                    {"new": new, "old": old},
                )
            bind.execute(
                sa.text(f"UPDATE {table} SET {key_column} = :new WHERE {key_column} = :old"),  # noqa: S608
                {"new": new, "old": old},
            )


def downgrade() -> None:
    op.drop_column("emails", "recipient_key")
