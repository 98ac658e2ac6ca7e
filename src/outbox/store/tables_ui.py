"""The web UI's users (migration 0011_ui_users) on `tables.metadata`. The dashboard's
activity chart reads events by time through ix_events_at_type (tables.py; 0011's index
on times alone was dropped by 0014)."""

from __future__ import annotations

import sqlalchemy as sa

from outbox.store.tables import UtcDateTime, metadata

ui_users = sa.Table(
    "ui_users",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("disabled_at", UtcDateTime, nullable=True),
)
