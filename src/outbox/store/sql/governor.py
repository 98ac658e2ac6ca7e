"""`SqlGovernor`: `store.base_integrations.GovernorStore` over a `Runner`: each
relay's governor state (core.governor) in `relay_governor`. A change is read, stepped
(a pure function) and written back in one transaction; the row is locked on
PostgreSQL, and SQLite's writer holds the database, so two nodes never both take
the half-open probe or both count one outage twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from outbox.core.governor import GovernorState
from outbox.store.sql import relay_holds as holds
from outbox.store.sql.runner import Runner
from outbox.store.sql.upsert import upsert
from outbox.store.sql.wakeup import Wakeup
from outbox.store.tables_relays import relay_governor

h = relay_governor
Step = Callable[[GovernorState], GovernorState]


def _to_health(row: Any) -> GovernorState:
    return GovernorState(relay=row.relay, failures=row.failures, backoff_until=row.backoff_until,
                       probe_until=row.probe_until, limit=row.session_limit,
                       throttled_at=row.throttled_at, reason=row.reason, guidance=row.guidance)


def load(conn: Connection, relay: str) -> GovernorState:
    row = conn.execute(select(h).where(h.c.relay == relay)).first()
    return _to_health(row) if row is not None else GovernorState(relay)


def load_all(conn: Connection) -> tuple[GovernorState, ...]:
    return tuple(_to_health(row) for row in conn.execute(select(h).order_by(h.c.relay)))


def change(conn: Connection, relay: str, step: Step, now: datetime) -> GovernorState:
    conn.execute(upsert(conn, h).values(relay=relay, updated_at=now)
                 .on_conflict_do_nothing(index_elements=["relay"]))
    row = conn.execute(select(h).where(h.c.relay == relay).with_for_update()).one()
    before = _to_health(row)
    after = step(before)
    if after != before:
        conn.execute(h.update().where(h.c.relay == relay).values(
            failures=after.failures, backoff_until=after.backoff_until,
            probe_until=after.probe_until, session_limit=after.limit,
            throttled_at=after.throttled_at, reason=after.reason, guidance=after.guidance,
            updated_at=now))
    return after


class SqlGovernor:
    """The relay-governor verbs over one runner."""

    def __init__(self, runner: Runner, wakeup: Wakeup) -> None:
        self._run = runner
        self._wakeup = wakeup

    async def load_governor_state(self, relay: str) -> GovernorState:
        return await self._run.read(load, relay)

    async def governor_states(self) -> tuple[GovernorState, ...]:
        return await self._run.read(load_all)

    async def change_governor_state(self, relay: str, step: Step, now: datetime) -> GovernorState:
        return await self._run.write(change, relay, step, now)

    async def bring_relay_forward(self, relay: str, now: datetime, until: datetime) -> int:
        async def chunk() -> int:
            moved = await self._run.write(holds.bring_forward, relay, now, until)
            if moved:
                self._wakeup.announce()  # the workers claim this chunk meanwhile
            return moved
        return await holds.in_chunks(await chunk(), chunk)
