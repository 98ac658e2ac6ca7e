"""The relay governor's state: back-off, probe and throttle per relay.

Revision ID: 0007_relay_governor
Revises: 0006_webhooks_rate_limits
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_relay_governor"
down_revision = "0006_webhooks_rate_limits"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "relay_governor",
        sa.Column("relay", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("backoff_until", Timestamp, nullable=True),
        sa.Column("probe_until", Timestamp, nullable=True),
        sa.Column("session_limit", sa.Integer(), server_default="0", nullable=False),
        sa.Column("throttled_at", Timestamp, nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("guidance", sa.Text(), server_default="", nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("relay", name="pk_relay_governor"),
    )


def downgrade() -> None:
    op.drop_table("relay_governor")
