"""One relay's governor on this node: `core.governor` decides, the store keeps the
state every node shares, and this applies it around each session.

    admit → (wait for a slot, spacing and the relay's rate) → deliver → observe

`admit` says whether the relay may be used now (not while it backs off; one
probe when the back-off is over). `slot` keeps at most the relay's current
concurrency in flight, spaces session starts while the relay is throttled and
takes a token of its `rate`. `observe` turns what the session said into the
relay's next state. The state is read again every `SYNC_INTERVAL`, so a relay
another node saw fail backs off here too. A store that cannot be reached never
stops delivery: the last known state is used and the error logged.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.governor import (
    Admission,
    GovernorPolicy,
    GovernorState,
    Signal,
    State,
    signal_of,
)
from outbox.core.ratelimit import LEASE_SECONDS, Limit
from outbox.core.report import DeliveryReport
from outbox.errors import OutboxError
from outbox.store.base import Store

log = structlog.get_logger("outbox.governor")

SYNC_INTERVAL = 5.0  # seconds between looks at the relay's shared state


def governor_policy(relay: RelaySettings, delivery: DeliverySettings) -> GovernorPolicy:
    return GovernorPolicy(max_connections=relay.max_connections,
                          first_backoff=delivery.relay_backoff_first,
                          max_backoff=delivery.relay_backoff_max)


class RelayGovernor:
    def __init__(self, relay: RelaySettings, delivery: DeliverySettings, store: Store, *,
                 wall: Callable[[], datetime], clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.relay = relay.name
        self.policy = governor_policy(relay, delivery)
        self.health = GovernorState(relay.name)
        self.probes = 0  # probe sessions sent by this node
        self._store = store
        self._wall = wall
        self._clock = clock
        self._rng = rng or random.Random()
        self._synced_at = float("-inf")
        self._active = 0
        self._room = asyncio.Condition()
        self._last_start = float("-inf")
        self._rate = Limit(relay.rate_per_minute)
        self._tokens = 0
        self._leased_at = float("-inf")

    # -- admit ------------------------------------------------------------------------

    async def admit(self) -> Admission:
        looked = self._synced_at
        await self._sync()
        now = self._wall()
        admission = self.policy.admit(self.health, now)
        if self.health.state(now) is State.BACKING_OFF and self._synced_at == looked:
            # A refusal holds the message back for the rest of the back-off, which an
            # operator may have ended on any node since the last look (`outbox relay test`).
            await self._sync(force=True)
            admission = self.policy.admit(self.health, now)
        if not admission.probe:
            return admission
        won = False

        def take_probe(health: GovernorState) -> GovernorState:
            nonlocal won
            if not self.policy.admit(health, now).probe:
                return health  # another node's probe is out, or the relay opened
            won = True
            return self.policy.claim_probe(health, now)

        await self._change(take_probe, now)
        if not won:
            return self.policy.admit(self.health, now)
        self.probes += 1
        log.info("relay back-off over; probing with one session", relay=self.relay,
                 probe=self.probes, failures=self.health.failures)
        return admission

    # -- slot ----------------------------------------------------------------------------

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """At most the relay's current concurrency at once, spaced while throttled, and
        within its rate."""
        async with self._room:
            await self._room.wait_for(lambda: self._active < self.limit())
            self._active += 1
        try:
            await self._space()
            await self._take_token()
            yield
        finally:
            async with self._room:
                self._active -= 1
                self._room.notify()  # one slot freed: one waiter (not a thundering herd)

    def limit(self) -> int:
        """Sessions the relay may have at once now: its max_connections, or fewer
        while it is throttled."""
        return self.health.limit or self.policy.max_connections

    async def _space(self) -> None:
        spacing = self.policy.spacing_for(self.health).total_seconds()
        if spacing:
            wait = self._last_start + spacing - self._clock()
            self._last_start = max(self._clock(), self._last_start + spacing)
            if wait > 0:
                await asyncio.sleep(wait)

    async def _take_token(self) -> None:
        """One message's worth of the relay's rate, leased from the shared bucket a
        second's worth at a time."""
        if not self._rate.is_limited:
            return
        while True:
            if self._tokens > 0 and self._clock() - self._leased_at < LEASE_SECONDS:
                self._tokens -= 1
                return
            give_back, self._tokens = self._tokens, 0
            try:
                grant = await self._store.rate_limits.take_tokens(
                    f"relay:{self.relay}", self._rate, 1, self._rate.lease, give_back,
                    self._wall())
            except OutboxError as exc:
                log.warning("cannot read the relay's rate bucket; sending without it",
                            relay=self.relay, error=exc.one_line())
                return
            if grant.ok:
                self._tokens, self._leased_at = grant.granted, self._clock()
                continue
            await asyncio.sleep(max(grant.wait.total_seconds(), 0.05))

    # -- observe -------------------------------------------------------------------------

    async def observe(self, report: DeliveryReport, *, probe: bool) -> DeliveryReport:
        """The relay's next state after this session; a relay-wide failure's report
        says how long the relay now backs off (the message waits that long)."""
        signal, reason, key = signal_of(report)
        now = self._wall()
        if not self._changes(signal, now, probe):
            return report
        seen = [self.health]  # what the store held just before this change

        def step(health: GovernorState) -> GovernorState:
            seen[0] = health
            return self.policy.after(health, signal, now, self._rng, probe=probe,
                                     reason=reason, key=key)

        await self._change(step, now)
        if seen[0] != self.health:  # sessions that failed together log it once
            self._log_transition(seen[0].state(now), signal, now)
        async with self._room:
            self._room.notify_all()  # a higher limit lets waiting sessions go
        return self._with_backoff(report, now) if signal is Signal.DOWN else report

    def _changes(self, signal: Signal, now: datetime, probe: bool) -> bool:
        """Whether the store must hear of this session (most sessions: no)."""
        health = self.health
        if signal is not Signal.OK or probe:
            return True
        if health.backoff_until is not None:
            return True
        if health.limit:
            return now - (health.throttled_at or now) >= self.policy.recover_every
        return bool(health.reason)

    def _with_backoff(self, report: DeliveryReport, now: datetime) -> DeliveryReport:
        until = self.health.backoff_until
        if report.failure is None or until is None:
            return report
        failure = replace(report.failure, retry_after=max(until - now, timedelta(0)))
        return replace(report, failure=failure)

    def _log_transition(self, before: State, signal: Signal, now: datetime) -> None:
        health, after = self.health, self.health.state(now)
        if signal is Signal.DOWN and after is State.BACKING_OFF and before is not after:
            wait = (health.backoff_until - now).total_seconds() if health.backoff_until else 0
            log.warning("relay down; backing off", relay=self.relay, failures=health.failures,
                        wait=round(wait, 1), until=health.backoff_until, reason=health.reason,
                        probes=self.probes)
        elif signal is Signal.THROTTLED:
            log.warning("relay asked Outbox to slow down; fewer sessions at once",
                        relay=self.relay, limit=health.limit, reason=health.reason)
        elif before is not after and after is State.OPEN:
            log.info("relay open again", relay=self.relay, probes=self.probes)

    # -- shared state --------------------------------------------------------------------

    async def _sync(self, *, force: bool = False) -> None:
        if not force and self._clock() - self._synced_at < SYNC_INTERVAL:
            return
        try:
            self.health = await self._store.governor.load_governor_state(self.relay)
        except OutboxError as exc:
            log.warning("cannot read the relay's governor state; using the last known",
                        relay=self.relay, error=exc.one_line())
            return
        self._synced_at = self._clock()

    async def _change(self, step: Callable[[GovernorState], GovernorState], now: datetime) -> None:
        try:
            self.health = await self._store.governor.change_governor_state(
                self.relay, step, now)
        except OutboxError as exc:
            log.warning("cannot store the relay's governor state; applying it on this "
                        "node only", relay=self.relay, error=exc.one_line())
            self.health = step(self.health)
            return
        self._synced_at = self._clock()
