"""The SQL of the operations verbs: alerts, recent outcomes per relay, and
what the database is (for `outbox doctor`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, insert, select, text, update

from outbox.store.base import Alert, DatabaseInfo
from outbox.store.tables import alerts, attempts

MIGRATIONS = Path(__file__).parent.parent / "migrations"
_ACTIVE = alerts.c.cleared_at.is_(None)


def active_alert_exists(conn: Connection, key: str) -> bool:
    found = conn.execute(select(alerts.c.id).where(alerts.c.key == key, _ACTIVE).limit(1))
    return found.first() is not None


def raise_alert(conn: Connection, alert: Alert) -> bool:
    """Insert unless active; the partial unique index stops a concurrent twin."""
    if active_alert_exists(conn, alert.key):
        return False
    conn.execute(insert(alerts).values(
        key=alert.key, severity=alert.severity, title=alert.title, detail=alert.detail,
        guidance=alert.guidance, raised_at=alert.raised_at, cleared_at=None))
    return True


def clear_alert(conn: Connection, key: str, now: datetime) -> bool:
    cleared = conn.execute(update(alerts).where(alerts.c.key == key, _ACTIVE)
                           .values(cleared_at=now))
    return cleared.rowcount > 0


def list_alerts(conn: Connection, active_only: bool, limit: int) -> tuple[Alert, ...]:
    query = select(alerts).order_by(alerts.c.raised_at.desc(), alerts.c.id.desc()).limit(limit)
    if active_only:
        query = query.where(_ACTIVE)
    return tuple(Alert(r.key, r.severity, r.title, r.detail, r.guidance, r.raised_at,
                       r.cleared_at) for r in conn.execute(query))


def relay_outcomes(conn: Connection, since: datetime) -> dict[str, dict[str, int]]:
    query = (select(attempts.c.relay, attempts.c.outcome, func.count())
             .where(attempts.c.finished_at >= since)
             .group_by(attempts.c.relay, attempts.c.outcome))
    counts: dict[str, dict[str, int]] = {}
    for relays, outcome, count in conn.execute(query):
        for relay in filter(None, str(relays).split(",")):  # "a,b": one attempt, two relays
            by_outcome = counts.setdefault(relay, {})
            by_outcome[outcome] = by_outcome.get(outcome, 0) + int(count)
    return counts


def describe_database(conn: Connection) -> DatabaseInfo:
    backend = conn.dialect.name
    postgres = backend == "postgresql"
    version = conn.execute(text("SHOW server_version" if postgres
                                else "SELECT sqlite_version()")).scalar()
    server_time = conn.execute(select(func.now())).scalar() if postgres else None
    return DatabaseInfo(backend=backend, version=str(version),
                        revision=MigrationContext.configure(conn).get_current_revision(),
                        head=head_revision(), server_time=server_time)


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    return str(head)
