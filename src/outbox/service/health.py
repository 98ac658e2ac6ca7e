"""The health facet: one reading of the queue and the relays that `/metrics`,
the alert engine, `outbox doctor` and `outbox relay ls` all use, so they can
never disagree; and the liveness `/healthz` answers with.

    snapshot = await outbox.health.snapshot()     # queue depth, oldest, relay states
    live = await outbox.health.liveness()         # database answers? loops running?
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from outbox.clock import utcnow
from outbox.config import Settings
from outbox.core import alerting
from outbox.core.governor import GovernorState, State
from outbox.core.model import MessageStatus
from outbox.errors import OutboxError
from outbox.store.base import QueueStats, RelayAuth, Store
from outbox.supervision import Loops

ACTIVITY = ("sent", "deferred", "failed")
ACTIVITY_FRESH = 2.0  # seconds a reading of the activity counts is reused

PING_TIMEOUT = 2.0  # seconds: a database slower than this counts as not answering


@dataclass(frozen=True, slots=True)
class RelayHealth:
    """A relay's state as every reader shows it."""

    name: str
    state: alerting.RelayState
    auth: RelayAuth  # its login state and why
    outcomes: Mapping[str, int]  # its attempts in [alerts] window, by outcome
    governor: GovernorState  # open, backing off, probing or throttled (core.governor)
    latest: str = ""  # the outcome of its newest attempt in the window


def verdict(relay: RelayHealth, now: datetime, sending: int = 0) -> str:
    """One word or two for `relay ls`: needs attention (its login failed or its mail
    was held), down (its connections fail: backing off or probing), throttled,
    failing (most recent attempts did not deliver), ok, or, with no attempt finished
    in the window, sending (`sending` of its messages taken by a worker: its first
    attempts are under way, as behind a slow relay) or idle."""
    paced = relay.governor.state(now)
    if relay.state is alerting.RelayState.NEEDS_ATTENTION:
        return "needs attention"
    if paced in (State.BACKING_OFF, State.PROBING):
        return "down"
    if paced is State.THROTTLED:
        return "throttled"
    if relay.state is alerting.RelayState.DEFERRING:
        return "failing"
    if relay.outcomes:
        return "ok"
    return f"sending ({sending} taken, none finished yet)" if sending else "idle"


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    at: datetime
    queue: QueueStats
    relays: tuple[RelayHealth, ...]
    window: timedelta
    # Disabled event webhook endpoints: id → (url, why).
    disabled_webhooks: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def held(self) -> int:
        return self.queue.by_status.get(MessageStatus.HELD.value, 0)

    def relay(self, name: str) -> RelayHealth | None:
        return next((r for r in self.relays if r.name == name), None)

    def for_alerts(self) -> alerting.Snapshot:
        marked = {r.name: (r.auth.reason, r.auth.guidance) for r in self.relays
                  if r.auth.needs_attention}
        return alerting.Snapshot(self.at, {r.name: r.outcomes for r in self.relays},
                                 self.queue.oldest_pending_at, self.held, marked,
                                 self.disabled_webhooks,
                                 {r.name: r.latest for r in self.relays if r.latest})


@dataclass(frozen=True, slots=True)
class Liveness:
    """What `/healthz` answers: 200 when `ok`, else 503 with the problems."""

    problems: tuple[str, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = field(default_factory=tuple)  # reported; still 200

    @property
    def ok(self) -> bool:
        return not self.problems


def thresholds(settings: Settings) -> alerting.Thresholds:
    a = settings.alerts
    return alerting.Thresholds(a.failure_ratio, a.window, a.min_attempts, a.oldest_queued_age,
                               a.held_count)


class Health:
    def __init__(self, settings: Settings, store: Store, loops: Loops, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.loops = loops
        self.thresholds = thresholds(settings)
        self._clock = clock
        self._activity: tuple[float, tuple[datetime, tuple[str, ...]],
                              dict[tuple[datetime, str], int]] | None = None

    async def snapshot(self) -> HealthSnapshot:
        now = self._clock()
        window = self.thresholds.window
        stats = await self.store.messages.stats()
        recent = await self.store.alerts.relay_outcomes(now - window)
        latest = await self.store.alerts.latest_outcomes(now - window)
        auth = {a.relay: a for a in await self.store.relay_auth.relay_states()}
        paced = {g.relay: g for g in await self.store.governor.governor_states()}
        # Configured relays first; then any the database still knows (removed from the
        # config, their mail still waiting), so that no alert goes unseen.
        names = list(dict.fromkeys([r.name for r in self.settings.relays], None))
        names += sorted((set(recent) | set(auth)) - set(names))
        relays = []
        for name in names:
            state = auth.get(name, RelayAuth(name))
            outcomes = recent.get(name, {})
            relays.append(RelayHealth(name, alerting.relay_state(
                outcomes, self.thresholds, state.needs_attention, latest.get(name, "")),
                state, outcomes, paced.get(name, GovernorState(name)), latest.get(name, "")))
        disabled = {e.id: (e.url, e.disabled_reason)
                    for e in await self.store.webhooks.list_endpoints() if not e.is_enabled}
        return HealthSnapshot(now, stats, tuple(relays), window, disabled)

    async def activity(self, since: datetime, types: Sequence[str] = ACTIVITY
                       ) -> dict[tuple[datetime, str], int]:
        """(minute, event type) -> events since `since`: the web UI dashboard's chart.
        Kept for `ACTIVITY_FRESH` seconds: every open dashboard asks every 2 s, and the
        count reads every event of the window (the last day)."""
        key = (since, tuple(types))
        cached = self._activity
        if cached is not None and cached[1] == key and \
                time.monotonic() - cached[0] < ACTIVITY_FRESH:
            return cached[2]
        counts = await self.store.ui_users.activity(since, types)
        self._activity = (time.monotonic(), key, counts)
        return counts

    async def liveness(self) -> Liveness:
        """The database must answer and every critical loop of this process run
        without failing; a failing non-critical loop is a warning."""
        problems = [problem for problem in (await self._database_problem(),) if problem]
        warnings: list[str] = []
        for monitor in self.loops:
            state = monitor.state
            found = (f"{state.name} loop is not running" if not state.running
                     else f"{state.name} loop is failing ({state.failures} times in a row): "
                          f"{state.error}" if state.is_failing
                     else f"{state.name}: {state.reported}" if state.reported else "")
            if found:
                (problems if state.critical else warnings).append(found)
        return Liveness(tuple(problems), tuple(warnings))

    async def _database_problem(self) -> str:
        # First, as the more precise reason: reads mostly go on beside a write lock
        # (SQLite's WAL), so the ping alone said ok while every write (submits, claims,
        # results) waited out the 30 s busy timeout.
        waited = self.store.writes_locked_out()
        if waited is not None:
            return (f"the database has been locked by another process for {waited:.0f} s: "
                    "writes wait (find the process holding a transaction open on the "
                    "database file, e.g. with `fuser`, and end it)")
        try:
            await asyncio.wait_for(self.store.ping(), PING_TIMEOUT)
        except TimeoutError:
            return f"the database did not answer within {PING_TIMEOUT:.0f}s"
        except OutboxError as exc:
            return f"the database cannot be reached: {exc.one_line()}"
        return ""
