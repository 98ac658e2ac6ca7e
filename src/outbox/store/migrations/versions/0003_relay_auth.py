"""Relay authentication: each relay's state and stored (encrypted) credentials,
and API keys kept as SHA-256 digests.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "relay_auth",
        sa.Column("relay", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default="ok", nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("guidance", sa.Text(), server_default="", nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("relay", name="pk_relay_auth"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("digest", name="uq_api_keys_digest"),
    )
    active = sa.text("revoked_at IS NULL")
    op.create_index("ix_api_keys_name_active", "api_keys", ["name"], unique=True,
                    sqlite_where=active, postgresql_where=active)


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("relay_auth")
