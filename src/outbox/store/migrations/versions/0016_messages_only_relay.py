"""A message's one relay (`messages.only_relay`), so that a claim skipping busy relays
reads each other relay's due mail on an index instead of walking past the busy ones'.

A claim skipping a relay with 100,000 due messages walked all of them, inside SQLite's
write turn: 85-103 ms a claim (9 ms on PostgreSQL), growing with the backlog.

Rows waiting now (due_at set) get their relay when all their recipients share one;
others stay NULL, which a claim treats as "look at the recipients", as before.

Revision ID: 0016_messages_only_relay
Revises: 0015_ui_sessions
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_messages_only_relay"
down_revision = "0015_ui_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("only_relay", sa.Text(), nullable=True))
    op.execute(
        "UPDATE messages SET only_relay = (SELECT min(r.relay) FROM recipients r "
        "WHERE r.message_id = messages.id) "
        "WHERE due_at IS NOT NULL AND (SELECT count(DISTINCT r.relay) FROM recipients r "
        "WHERE r.message_id = messages.id) = 1")
    due = sa.text("due_at IS NOT NULL")
    op.create_index("ix_messages_only_relay_due_at", "messages", ["only_relay", "due_at"],
                    sqlite_where=due, postgresql_where=due)


def downgrade() -> None:
    op.drop_index("ix_messages_only_relay_due_at", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("only_relay")
