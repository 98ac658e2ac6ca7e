"""The suppression list (hard bounces, complaints, unsubscribes, operators' entries).

Revision ID: 0010_bounces_suppressions
Revises: 0009_list_filters
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_bounces_suppressions"
down_revision = "0009_list_filters"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("source_message", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("address", name="pk_suppressions"),
    )
    op.create_index("ix_suppressions_created_at_address", "suppressions",
                    ["created_at", "address"])


def downgrade() -> None:
    op.drop_table("suppressions")
