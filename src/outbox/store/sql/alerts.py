"""`SqlAlerts`: `store.base.AlertStore` over a `Runner`, and its SQL: relay and
queue alerts (at most one active per key, its text kept current), and recent
outcomes per relay (a held attempt counts as `held` only for the relay that holds
its message: `core.alerting.relay_outcome`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from outbox.core.alerting import HELD_MESSAGE, relay_outcome
from outbox.errors import Conflict
from outbox.store.sql.runner import Runner
from outbox.store.sql.upsert import upsert
from outbox.store.tables import alerts, attempts, messages
from outbox.store.tables_relays import clock_readings
from outbox.store.values import Alert, ClockReading

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


def refresh_alert(conn: Connection, key: str, title: str, detail: str, guidance: str) -> bool:
    refreshed = conn.execute(update(alerts).where(alerts.c.key == key, _ACTIVE)
                             .where((alerts.c.title != title) | (alerts.c.detail != detail)
                                    | (alerts.c.guidance != guidance))
                             .values(title=title, detail=detail, guidance=guidance))
    return refreshed.rowcount > 0


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


def _recent(conn: Connection, since: datetime, measure: Any) -> Iterator[tuple[str, str, Any]]:
    """(relay, its outcome, measure) per group of attempts finished since `since`; an
    attempt through "a,b" counts for each relay."""
    query = (select(attempts.c.relay, attempts.c.outcome, messages.c.held_for_relay, measure)
             .join_from(attempts, messages, messages.c.id == attempts.c.message_id)
             .where(attempts.c.finished_at >= since)
             .group_by(attempts.c.relay, attempts.c.outcome, messages.c.held_for_relay))
    for relays, outcome, held_for_relay, value in conn.execute(query):
        for relay in filter(None, str(relays).split(",")):
            yield relay, relay_outcome(outcome, relay, held_for_relay), value


def relay_outcomes(conn: Connection, since: datetime) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for relay, outcome, count in _recent(conn, since, func.count()):
        by_outcome = counts.setdefault(relay, {})
        by_outcome[outcome] = by_outcome.get(outcome, 0) + int(count)
    return counts


def latest_outcomes(conn: Connection, since: datetime) -> dict[str, str]:
    """Each relay's newest attempt that says something about it (not HELD_MESSAGE)."""
    newest: dict[str, tuple[datetime, str]] = {}
    for relay, outcome, finished_at in _recent(conn, since, func.max(attempts.c.finished_at)):
        if outcome == HELD_MESSAGE:
            continue
        if relay not in newest or (finished_at, outcome) > newest[relay]:
            newest[relay] = (finished_at, outcome)
    return {relay: outcome for relay, (_, outcome) in newest.items()}


def record_clock_reading(conn: Connection, reading: ClockReading) -> None:
    values = {"skew_seconds": reading.skew_seconds, "measured_at": reading.measured_at}
    conn.execute(upsert(conn, clock_readings)
                 .values(who=reading.who, against=reading.against, **values)
                 .on_conflict_do_update(index_elements=["who", "against"], set_=values))


def clock_readings_since(conn: Connection, since: datetime) -> tuple[ClockReading, ...]:
    c = clock_readings.c
    query = (select(clock_readings).where(c.measured_at >= since)
             .order_by(c.measured_at.desc(), c.who, c.against))
    return tuple(ClockReading(r.who, r.against, float(r.skew_seconds), r.measured_at)
                 for r in conn.execute(query))


class SqlAlerts:
    """The alert verbs over one runner."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def raise_alert(self, key: str, severity: str, title: str, detail: str,
                          guidance: str, now: datetime) -> bool:
        alert = Alert(key, severity, title, detail, guidance, raised_at=now)
        try:
            return await self._run.write(raise_alert, alert)
        except Conflict:  # another node raised it between our check and insert
            return False

    async def refresh_alert(self, key: str, title: str, detail: str, guidance: str) -> bool:
        return await self._run.write(refresh_alert, key, title, detail, guidance)

    async def clear_alert(self, key: str, now: datetime) -> bool:
        return await self._run.write(clear_alert, key, now)

    async def list_alerts(self, active_only: bool, limit: int = 100) -> tuple[Alert, ...]:
        return await self._run.read(list_alerts, active_only, limit)

    async def relay_outcomes(self, since: datetime) -> dict[str, dict[str, int]]:
        return await self._run.read(relay_outcomes, since)

    async def latest_outcomes(self, since: datetime) -> dict[str, str]:
        return await self._run.read(latest_outcomes, since)

    async def record_clock_reading(self, reading: ClockReading) -> None:
        await self._run.write(record_clock_reading, reading)

    async def clock_readings(self, since: datetime) -> tuple[ClockReading, ...]:
        return await self._run.read(clock_readings_since, since)
