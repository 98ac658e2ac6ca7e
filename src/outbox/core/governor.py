"""The relay governor: how fast, and whether at all, Outbox may use a relay.

Postfix keeps per-destination state in its queue manager (`qmgr_queue.c`):
a destination that fails as a whole is marked dead and skipped until a
back-off expires, then tried once; a destination that says "slow down" gets
less concurrency. The same here, as a pure function of one relay's
`GovernorState` (kept in the store, so every node sees it) and what a session
said (`Signal`):

- `DOWN` (refused connection, timeout before the greeting, TLS failure, a
  4xx before MAIL FROM, a token endpoint that cannot be reached): the relay
  backs off exponentially (`first_backoff` doubling up to `max_backoff`). Its
  mail waits for `backoff_until` without spending attempts (SPEC §2). When
  the back-off is over, one session is let through as a probe (half-open);
  everything else waits until the probe has answered.
- `THROTTLED` (a 421 or a 4.7.x "slow down" inside a session): the relay's
  concurrency is halved (down to one session) and sessions are spaced by
  `spacing`; every `recover_every` without another throttle gives one
  session back, until the relay is open again.
- `OK`: a session got through set-up: the relay is open (back-off and probe
  forgotten; a throttle recovers as above).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from outbox.core import guidance
from outbox.core.model import Outcome, OutcomeKind
from outbox.core.relay_state import SETUP_STAGES, session_outcome
from outbox.core.replies import ReplyClass, classify_reply
from outbox.core.report import DeliveryReport


class Signal(StrEnum):
    OK = "ok"
    DOWN = "down"
    THROTTLED = "throttled"


class State(StrEnum):
    OPEN = "open"
    BACKING_OFF = "backing_off"
    PROBING = "probing"  # the back-off is over and one session finds out
    THROTTLED = "throttled"


@dataclass(frozen=True, slots=True)
class GovernorState:
    """One relay's governor state, as stored."""

    relay: str
    failures: int = 0  # relay-wide failures in a row
    backoff_until: datetime | None = None
    probe_until: datetime | None = None  # a probe session is out until then
    limit: int = 0  # sessions at once while throttled; 0: not throttled
    throttled_at: datetime | None = None  # the last throttle, or the last step back up
    reason: str = ""  # what the relay last said that made it back off or throttle
    guidance: str = ""

    def state(self, now: datetime) -> State:
        if self.backoff_until is not None:
            if now < self.backoff_until:
                return State.BACKING_OFF
            return State.PROBING
        if self.limit:
            return State.THROTTLED
        return State.OPEN

    def describe(self, now: datetime) -> str:
        """One line for `relay ls`, `doctor` and /healthz."""
        state = self.state(now)
        if state is State.BACKING_OFF:
            assert self.backoff_until is not None
            return (f"backing off until {self.backoff_until.isoformat(timespec='seconds')} "
                    f"after {self.failures} failure(s): {self.reason}")
        if state is State.PROBING:
            return f"probing after {self.failures} failure(s): {self.reason}"
        if state is State.THROTTLED:
            return f"throttled to {self.limit} session(s) at once: {self.reason}"
        return "open"


@dataclass(frozen=True, slots=True)
class Admission:
    """May a session start now? If not, when to look again."""

    go: bool
    probe: bool = False  # this session is the half-open probe
    wait_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class GovernorPolicy:
    max_connections: int  # the relay's own limit, what a throttle recovers to
    first_backoff: timedelta = timedelta(seconds=10)
    max_backoff: timedelta = timedelta(minutes=10)
    probe_window: timedelta = timedelta(seconds=60)  # a probe that never reports is forgotten
    recover_every: timedelta = timedelta(seconds=30)
    spacing: timedelta = timedelta(milliseconds=500)  # between session starts, throttled
    jitter: float = 0.1

    def backoff(self, failures: int, rng: random.Random) -> timedelta:
        base = self.first_backoff.total_seconds() * 2 ** min(max(failures - 1, 0), 30)
        seconds = min(base, self.max_backoff.total_seconds())
        return timedelta(seconds=seconds * (1 + rng.uniform(0, self.jitter)))

    # -- admission -------------------------------------------------------------------

    def admit(self, health: GovernorState, now: datetime) -> Admission:
        """Backing off: wait. Back-off over: the first comer probes (the caller
        stores `claim_probe`'s result atomically), the others look again after the
        first back-off, or when the probe's window ends if that is sooner."""
        state = health.state(now)
        if state is State.BACKING_OFF:
            return Admission(False, wait_until=health.backoff_until)
        if state is State.PROBING:
            if health.probe_until is not None and now < health.probe_until:
                # The probe usually answers in a moment: look again after the shortest
                # back-off rather than the whole window kept for a probe that never reports.
                return Admission(False, wait_until=min(health.probe_until,
                                                       now + self.first_backoff))
            return Admission(True, probe=True)
        return Admission(True)

    def claim_probe(self, health: GovernorState, now: datetime) -> GovernorState:
        return replace(health, probe_until=now + self.probe_window)

    # -- what a session said -----------------------------------------------------------

    def after(self, health: GovernorState, signal: Signal, now: datetime, rng: random.Random,
              *, probe: bool = False, reason: str = "", key: str = "") -> GovernorState:
        """The relay's state after one session said `signal`."""
        if signal is Signal.DOWN:
            return self._down(health, now, rng, probe, reason, key)
        if signal is Signal.THROTTLED:
            limit = max(1, (health.limit or self.max_connections) // 2)
            return replace(health, failures=0, backoff_until=None, probe_until=None,
                           limit=limit, throttled_at=now, reason=reason, guidance=key)
        return self._recovered(health, now)

    def _down(self, health: GovernorState, now: datetime, rng: random.Random, probe: bool,
              reason: str, key: str) -> GovernorState:
        # Sessions that were already out when the relay went down all fail at once:
        # only the first of them (or the probe) moves the back-off on.
        if health.state(now) is State.BACKING_OFF or (
                health.state(now) is State.PROBING and not probe):
            return health
        failures = health.failures + 1
        return replace(health, failures=failures,
                       backoff_until=now + self.backoff(failures, rng), probe_until=None,
                       reason=reason, guidance=key)

    def _recovered(self, health: GovernorState, now: datetime) -> GovernorState:
        opened = replace(health, failures=0, backoff_until=None, probe_until=None)
        if not health.limit:
            return replace(opened, reason="", guidance="") if health.reason else opened
        since = health.throttled_at or now
        if now - since < self.recover_every:
            return opened
        limit = health.limit + 1
        if limit >= self.max_connections:
            return replace(opened, limit=0, throttled_at=None, reason="", guidance="")
        return replace(opened, limit=limit, throttled_at=now)

    def spacing_for(self, health: GovernorState) -> timedelta:
        return self.spacing if health.limit else timedelta(0)


def signal_of(report: DeliveryReport) -> tuple[Signal, str, str]:
    """What one session says about its relay, with the reason and guidance key."""
    failure = report.failure
    if failure is not None and failure.stage in SETUP_STAGES:
        # Every recipient shares this outcome (core.classify): no need to classify them.
        outcome = session_outcome(failure) if report.recipients else None
        if outcome is not None and outcome.relay_wide:
            return Signal.DOWN, _reason(outcome), outcome.guidance
        return Signal.OK, "", ""  # held for credentials: the gate's business, not ours
    for reply in report.replies():
        if classify_reply(reply) is ReplyClass.THROTTLED:
            return Signal.THROTTLED, str(reply), guidance.key_for_reply(reply)
    return Signal.OK, "", ""


def relay_wide(outcome: Outcome) -> bool:
    """A relay-wide failure: the relay's mail waits without spending attempts."""
    return outcome.relay_wide and outcome.kind is OutcomeKind.DEFERRED


def throttled(outcome: Outcome) -> bool:
    """The relay said "slow down" (421, 4.7.x) and the governor paces it (`THROTTLED`):
    as with a relay that is down, the mail waits without spending attempts (SPEC F3),
    else sustained throttling would fail mail the relay would have taken later."""
    return (outcome.kind is OutcomeKind.DEFERRED and outcome.reply is not None
            and classify_reply(outcome.reply) is ReplyClass.THROTTLED)


def _reason(outcome: Outcome) -> str:
    if outcome.reply is not None:
        return str(outcome.reply)
    return outcome.detail or outcome.guidance
