"""The web UI's users (migration 0011_ui_users) on `tables.metadata`, and the index on
events' times that the dashboard's activity chart reads."""

from __future__ import annotations

import sqlalchemy as sa

from outbox.store.tables import UtcDateTime, events, metadata

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

sa.Index("ix_events_at", events.c.at)
