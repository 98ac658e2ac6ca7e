"""The web UI's users (migration 0011_ui_users) and its signed-in sessions (0015_ui_sessions)
on `tables.metadata`. The dashboard's
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

# A session cookie names one row here by the SHA-256 of its random id: signing out, a new
# password or disabling the user deletes it, and every node sees that at the next request.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("id_hash", sa.Text, primary_key=True),
    sa.Column("user_name", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Index("ix_ui_sessions_user_name", "user_name"),
    sa.Index("ix_ui_sessions_expires_at", "expires_at"),
)
