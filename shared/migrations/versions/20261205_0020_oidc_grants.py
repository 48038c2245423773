"""oidc grants: each account's stable subject, the consents people gave, the grants (code and
token families) issued through each sign-in, refresh tokens, the back-channel logout outbox,
and where RP-initiated logout may return to.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 23:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.func.now()


def _when(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=NOW if now else None
    )


def upgrade() -> None:
    # Existing accounts get theirs from the default; new ones from the application.
    op.add_column(
        "users",
        sa.Column(
            "subject",
            sa.Uuid(as_uuid=False),
            nullable=False,
            server_default=sa.text("gen_random_uuid()"),
        ),
    )
    op.create_unique_constraint("uq_users_subject", "users", ["subject"])
    op.add_column(
        "oidc_clients",
        sa.Column(
            "post_logout_redirect_uris",
            postgresql.ARRAY(sa.Text()),
            nullable=False,
            server_default="{}",
        ),
    )
    op.create_table(
        "oidc_consents",
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "client_id",
            sa.String(64),
            sa.ForeignKey("oidc_clients.client_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("scopes", postgresql.ARRAY(sa.String(40)), nullable=False),
        _when("granted_at", nullable=False, now=True),
    )
    op.create_table(
        "oidc_grants",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "client_id",
            sa.String(64),
            sa.ForeignKey("oidc_clients.client_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "session_id",
            sa.String(64),
            # A sign-in's id changes when its credentials do (sessions.rotate): its grants
            # follow it.
            sa.ForeignKey("sessions.id", ondelete="CASCADE", onupdate="CASCADE"),
            nullable=False,
        ),
        sa.Column("scopes", postgresql.ARRAY(sa.String(40)), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("nonce", sa.String(512)),
        sa.Column("code_hash", sa.String(64)),
        sa.Column("code_challenge", sa.String(43)),
        _when("code_expires_at", nullable=False),
        _when("code_used_at"),
        sa.Column("offline", sa.Boolean(), nullable=False),
        _when("created_at", nullable=False, now=True),
        _when("last_used_at"),
        _when("expires_at", nullable=False),
        _when("revoked_at"),
        sa.Column("revoked_why", sa.String(60)),
        sa.UniqueConstraint("code_hash", name=op.f("uq_oidc_grants_code_hash")),
    )
    op.create_index("ix_oidc_grants_user_id", "oidc_grants", ["user_id"])
    op.create_index("ix_oidc_grants_session_id", "oidc_grants", ["session_id"])
    op.create_index("ix_oidc_grants_client_id", "oidc_grants", ["client_id"])
    op.create_table(
        "oidc_refresh_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "grant_id",
            sa.String(32),
            sa.ForeignKey("oidc_grants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _when("created_at", nullable=False, now=True),
        _when("used_at"),
    )
    op.create_index("ix_oidc_refresh_tokens_grant_id", "oidc_refresh_tokens", ["grant_id"])
    op.create_table(
        "oidc_logout_deliveries",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "client_id",
            sa.String(64),
            sa.ForeignKey("oidc_clients.client_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(36), nullable=False),
        sa.Column("sid", sa.String(24), nullable=False),
        sa.Column("status", sa.String(10), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text()),
        _when("created_at", nullable=False, now=True),
        _when("next_attempt_at", nullable=False, now=True),
        _when("claimed_until"),
        _when("delivered_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed')", name=op.f("ck_oidc_logout_deliveries_status")
        ),
    )
    op.create_index(
        "ix_oidc_logout_deliveries_pending_due",
        "oidc_logout_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("oidc_logout_deliveries")
    op.drop_table("oidc_refresh_tokens")
    op.drop_table("oidc_grants")
    op.drop_table("oidc_consents")
    op.drop_column("oidc_clients", "post_logout_redirect_uris")
    op.drop_constraint("uq_users_subject", "users")
    op.drop_column("users", "subject")
