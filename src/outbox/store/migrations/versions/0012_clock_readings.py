"""The clock skews delivery measured (against the database server, a relay's
greeting, a token endpoint), the newest per (who, against), for `outbox doctor`.

Revision ID: 0012_clock_readings
Revises: 0011_ui_users
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_clock_readings"
down_revision = "0011_ui_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clock_readings",
        sa.Column("who", sa.Text(), nullable=False),
        sa.Column("against", sa.Text(), nullable=False),
        sa.Column("skew_seconds", sa.Float(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("who", "against", name="pk_clock_readings"),
    )


def downgrade() -> None:
    op.drop_table("clock_readings")
