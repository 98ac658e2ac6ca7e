"""The initial schema: messages, recipients, attempts, events.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    create_messages()
    create_recipients()
    create_attempts()
    create_events()


def create_messages() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("due_at", Timestamp, nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("claim_token", sa.Text(), nullable=True),
        sa.Column("lease_until", Timestamp, nullable=True),
        sa.Column("held_since", Timestamp, nullable=True),
        sa.Column("held_seconds", sa.Float(), server_default="0", nullable=False),
        sa.Column("hold_reason", sa.Text(), server_default="", nullable=False),
        sa.Column("held_for_relay", sa.Text(), nullable=True),
        sa.Column("resent_from", sa.Text(), nullable=True),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.UniqueConstraint("owner", "idempotency_key",
                            name="uq_messages_owner_idempotency_key"),
    )
    due = sa.text("due_at IS NOT NULL")
    op.create_index("ix_messages_due_at", "messages", ["due_at"], sqlite_where=due,
                    postgresql_where=due)
    op.create_index("ix_messages_created_at_id", "messages", ["created_at", "id"])
    op.create_index("ix_messages_status_created_at_id", "messages",
                    ["status", "created_at", "id"])
    op.create_index("ix_messages_owner_message_id", "messages", ["owner", "message_id"])


def create_recipients() -> None:
    op.create_table(
        "recipients",
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("relay", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("provenance", sa.Text(), server_default="", nullable=False),
        sa.Column("reply_code", sa.Integer(), nullable=True),
        sa.Column("enhanced_code", sa.Text(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("guidance", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE",
                                name="fk_recipients_message_id_messages"),
        sa.PrimaryKeyConstraint("message_id", "position", name="pk_recipients"),
    )


def create_attempts() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("relay", sa.Text(), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE",
                                name="fk_attempts_message_id_messages"),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
    )
    op.create_index("ix_attempts_message_id", "attempts", ["message_id"])


def create_events() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.Text(), nullable=True),
        sa.Column("reply_code", sa.Integer(), nullable=True),
        sa.Column("enhanced_code", sa.Text(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("guidance", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE",
                                name="fk_events_message_id_messages"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_message_id_id", "events", ["message_id", "id"])


def downgrade() -> None:
    for table in ("events", "attempts", "recipients", "messages"):
        op.drop_table(table)
