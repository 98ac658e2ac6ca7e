"""The tables of delivery-event webhooks and API rate limits, on `tables.metadata`
(migration 0006_webhooks_rate_limits)."""

from __future__ import annotations

import sqlalchemy as sa

from outbox.store.tables import BigId, UtcDateTime, metadata

# An endpoint's secret is sealed with the installation's key (outbox.secrets), since it
# must be opened to sign. Events reach an endpoint through `webhook_deliveries`: one row
# per (endpoint, event), inserted in the transaction that records the event, so an event
# is never lost across a crash. A delivery is due while `next_at` is set (the partial
# index holds only those); a claim moves `next_at` past the request's deadline.
webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("batch_size", sa.Integer, nullable=False, server_default="1"),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("disabled_at", UtcDateTime, nullable=True),
    sa.Column("disabled_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),  # in a row
    sa.Column("failing_since", UtcDateTime, nullable=True),
    sa.Column("last_success_at", UtcDateTime, nullable=True),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("endpoint_id", sa.Text, sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("event_id", BigId, sa.ForeignKey("events.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_at", UtcDateTime, nullable=True),
    sa.Column("claim_token", sa.Text, nullable=True),
    sa.Column("last_attempt_at", UtcDateTime, nullable=True),
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("delivered_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("endpoint_id", "event_id"),
)
sa.Index(
    "ix_webhook_deliveries_next_at",
    webhook_deliveries.c.next_at,
    sqlite_where=webhook_deliveries.c.next_at.isnot(None),
    postgresql_where=webhook_deliveries.c.next_at.isnot(None),
)
sa.Index("ix_webhook_deliveries_event_id", webhook_deliveries.c.event_id)

# Each API key's token buckets (core.ratelimit), shared by every node: key "<name>:requests"
# or "<name>:messages".
rate_limit_buckets = sa.Table(
    "rate_limit_buckets",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("counted_at", UtcDateTime, nullable=False),
)
