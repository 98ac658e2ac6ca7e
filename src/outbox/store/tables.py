"""The schema, as SQLAlchemy Core tables; migrations/ must produce exactly this.

Four tables: `messages` (one row per message, with its claim and hold
state), `recipients` (in submission order), `attempts` (one row per finished
attempt, with the redacted transcript) and `events` (the timeline).

A message is claimable exactly when `due_at` is set and has passed; every
transition to a non-claimable status clears it, so the partial index on
`due_at` holds only the waiting queue and claiming stays flat however many
finished messages the table keeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite stores fixed-width text in UTC
    without an offset (so that text comparison is time comparison) and gets
    the UTC zone back on the way out. Naive datetimes are refused.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"a timezone-aware datetime is required, not {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=True),
    sa.Column("claimed_by", sa.Text, nullable=True),
    sa.Column("claim_token", sa.Text, nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    sa.Column("held_since", UtcDateTime, nullable=True),
    sa.Column("held_seconds", sa.Float, nullable=False, server_default="0"),
    sa.Column("hold_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("held_for_relay", sa.Text, nullable=True),  # set when a relay problem held it
    sa.Column("resent_from", sa.Text, nullable=True),
    # Who submitted it (the API key's name): scopes idempotency keys and Message-IDs.
    sa.Column("owner", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.Text, nullable=True),
    sa.Column("request_hash", sa.Text, nullable=True),
    # Rows without a key never collide (NULLs are distinct); one row per used key.
    sa.UniqueConstraint("owner", "idempotency_key"),
)

sa.Index(
    "ix_messages_due_at",
    messages.c.due_at,
    sqlite_where=messages.c.due_at.isnot(None),
    postgresql_where=messages.c.due_at.isnot(None),
)
sa.Index("ix_messages_created_at_id", messages.c.created_at, messages.c.id)
sa.Index("ix_messages_status_created_at_id", messages.c.status, messages.c.created_at,
         messages.c.id)
sa.Index("ix_messages_owner_message_id", messages.c.owner, messages.c.message_id)

recipients = sa.Table(
    "recipients",
    metadata,
    sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("relay", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("provenance", sa.Text, nullable=False, server_default=""),
    sa.Column("reply_code", sa.Integer, nullable=True),
    sa.Column("enhanced_code", sa.Text, nullable=True),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("guidance", sa.Text, nullable=True),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("relay", sa.Text, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("transcript", sa.Text, nullable=False),
)
sa.Index("ix_attempts_message_id", attempts.c.message_id)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.Text, sa.ForeignKey("messages.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("recipient", sa.Text, nullable=True),
    sa.Column("reply_code", sa.Integer, nullable=True),
    sa.Column("enhanced_code", sa.Text, nullable=True),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("guidance", sa.Text, nullable=True),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
)
sa.Index("ix_events_message_id_id", events.c.message_id, events.c.id)
