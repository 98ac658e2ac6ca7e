"""The relay governor's state (core.governor), one row per relay that ever backed off
or was throttled, on `tables.metadata` (migration 0007_relay_governor). Kept in the
database so that every node backs off, probes and throttles as one.

`clock_readings` (migration 0012_clock_readings): the clock skews delivery measured,
the newest per (who, against), for `outbox doctor` on any node."""

from __future__ import annotations

import sqlalchemy as sa

from outbox.store.tables import UtcDateTime, metadata

relay_governor = sa.Table(
    "relay_governor",
    metadata,
    sa.Column("relay", sa.Text, primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("backoff_until", UtcDateTime, nullable=True),
    sa.Column("probe_until", UtcDateTime, nullable=True),
    sa.Column("session_limit", sa.Integer, nullable=False, server_default="0"),
    sa.Column("throttled_at", UtcDateTime, nullable=True),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("guidance", sa.Text, nullable=False, server_default=""),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)


clock_readings = sa.Table(
    "clock_readings",
    metadata,
    sa.Column("who", sa.Text, primary_key=True),
    sa.Column("against", sa.Text, primary_key=True),
    sa.Column("skew_seconds", sa.Float, nullable=False),
    sa.Column("measured_at", UtcDateTime, nullable=False),
)
