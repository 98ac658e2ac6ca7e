"""The suppression list, on `tables.metadata` (migration 0010_bounces_suppressions).

One row per address (`core.suppression.suppression_key`): the reason, the bounce's
status and words or the operator's note, the message whose bounce or report added
it, and an optional expiry (an expired row no longer suppresses)."""

from __future__ import annotations

import sqlalchemy as sa

from outbox.store.tables import UtcDateTime, metadata

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("address", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("source_message", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=True),
)
sa.Index("ix_suppressions_created_at_address", suppressions.c.created_at,
         suppressions.c.address)
