"""Drop ix_events_at: ix_events_at_type (0013) starts with the same column, so it serves
every query the older index served, and each event written kept both up to date. A
1,000-recipient deferral writes 1,000 events on SQLite's one writer, where every submit
waits: 7.0-7.9 ms with both indexes, 5.9-6.0 ms with one (issue 17).

Revision ID: 0014_drop_events_at
Revises: 0013_events_at_type
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0014_drop_events_at"
down_revision = "0013_events_at_type"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_events_at", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_at", "events", ["at"])
