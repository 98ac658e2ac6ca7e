"""Alerts (core.alerting), and an index for reading recent attempts by time.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("ix_attempts_finished_at", "attempts", ["finished_at"])
    op.create_table(
        "alerts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("guidance", sa.Text(), server_default="", nullable=False),
        sa.Column("raised_at", Timestamp, nullable=False),
        sa.Column("cleared_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    active = sa.text("cleared_at IS NULL")
    op.create_index("ix_alerts_key_active", "alerts", ["key"], unique=True,
                    sqlite_where=active, postgresql_where=active)
    op.create_index("ix_alerts_raised_at", "alerts", ["raised_at"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_index("ix_attempts_finished_at", table_name="attempts")
