"""Events by time and type: the dashboard's charts count the last hour's and the
last day's sent / deferred / failed events without reading the whole table.

Revision ID: 0013_events_at_type
Revises: 0012_clock_readings
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0013_events_at_type"
down_revision = "0012_clock_readings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_at_type", "events", ["at", "type"])


def downgrade() -> None:
    op.drop_index("ix_events_at_type", table_name="events")
