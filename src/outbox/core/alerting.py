"""Alert rules: from a snapshot of the queue and the relays to the alerts that
should be active now, and what changed since the last look.

Pure (STYLE principle 12): `outbox.alerts` reads the snapshot from the store,
passes `now`, then persists, logs and posts the changes. The alerts:

    relay.<name>.failure_rate      most of a relay's attempts in the window did not deliver,
                                   and its latest attempt did not either
    relay.<name>.needs_attention   the relay is marked so (core.attention), or its mail
                                   was held in the window (credentials, TLS trust) and it
                                   has not delivered since
    queue.backlog                  the oldest waiting message is older than oldest_queued_age
    queue.held                     held_count or more messages are held
    webhook.<id>.disabled          an event webhook endpoint was disabled after failing

A message held for itself (a corrupt or missing attachment) is the operator's
business, not the relay's: it counts towards `queue.held` only, never towards
its relay's alerts or state (`relay_outcome`).

Each alert names a guidance key (`core.guidance`) that says what to do. A relay
that delivers again clears its alerts at the next evaluation, without waiting for
its failures to leave the window; while an alert stays active, its detail follows
the numbers (`stale`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum

from outbox.core.attention import attention_cause, login_tried

DELIVERED = frozenset({"sent", "partially_sent"})
HELD = "held"
# A held attempt whose message is not held for this relay (`relay_outcome`): neither a
# failure of the relay nor a sign that it needs attention.
HELD_MESSAGE = "held_message"
BACKLOG = "queue.backlog"
HELD_MESSAGES = "queue.held"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class RelayState(IntEnum):
    """A relay's health for the `outbox_relay_state` gauge."""

    OK = 0
    DEFERRING = 1  # failure_ratio or more of its recent attempts did not deliver
    NEEDS_ATTENTION = 2  # its mail was held: retrying cannot fix it


@dataclass(frozen=True, slots=True)
class Thresholds:
    failure_ratio: float  # 0: no failure-rate alerts
    window: timedelta
    min_attempts: int
    oldest_queued_age: timedelta  # 0: no backlog alert
    held_count: int  # 0: no held alert


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the queue looks like at `now`."""

    now: datetime
    relay_outcomes: Mapping[str, Mapping[str, int]]  # attempts in the window: relay → outcome → n
    oldest_pending_at: datetime | None
    held: int
    # Relays marked needs_attention in the store: name → (what the relay said, guidance key).
    needs_attention: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # Disabled event webhook endpoints: id → (url, why it was disabled).
    disabled_webhooks: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # Each relay's newest attempt in the window: relay → its outcome.
    latest: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertSpec:
    key: str
    severity: Severity
    title: str
    detail: str
    guidance: str  # a guidance key


@dataclass(frozen=True, slots=True)
class Changes:
    to_raise: tuple[AlertSpec, ...]  # wanted now; the store ignores those already active
    to_clear: tuple[str, ...]  # active but no longer wanted


def relay_outcome(outcome: str, relay: str, held_for_relay: str | None) -> str:
    """An attempt's outcome as it counts for `relay`. A held attempt is the relay's
    only when the relay holds its message (credentials, no AUTH, TLS trust: the
    message's `held_for_relay`); one held for itself (a corrupt or missing attachment)
    or by another relay of the same attempt is HELD_MESSAGE."""
    if outcome == HELD and held_for_relay != relay:
        return HELD_MESSAGE
    return outcome


def relays_own(outcomes: Mapping[str, int]) -> dict[str, int]:
    """The outcomes that say something about the relay (without HELD_MESSAGE)."""
    return {outcome: count for outcome, count in outcomes.items() if outcome != HELD_MESSAGE}


def failures(outcomes: Mapping[str, int]) -> int:
    """Attempts that did not deliver: deferred, failed, held, uncertain."""
    return sum(count for outcome, count in outcomes.items() if outcome not in DELIVERED)


def relay_state(outcomes: Mapping[str, int], thresholds: Thresholds,
                marked: bool = False, latest: str = "") -> RelayState:
    """From a relay's attempts in the window (and whether the store marks it as
    needing attention, and its newest attempt's outcome: one that delivered means
    the relay works now). With failure_ratio 0, any failure is deferring."""
    outcomes = relays_own(outcomes)
    if marked:
        return RelayState.NEEDS_ATTENTION
    if latest in DELIVERED:
        return RelayState.OK
    if outcomes.get(HELD, 0) > 0:
        return RelayState.NEEDS_ATTENTION
    total, failed = sum(outcomes.values()), failures(outcomes)
    if failed and failed >= thresholds.failure_ratio * total:
        return RelayState.DEFERRING
    return RelayState.OK


def evaluate(snapshot: Snapshot, thresholds: Thresholds) -> list[AlertSpec]:
    """Every alert that should be active at `snapshot.now`."""
    wanted: list[AlertSpec] = []
    for relay in sorted({*snapshot.relay_outcomes, *snapshot.needs_attention}):
        outcomes = relays_own(snapshot.relay_outcomes.get(relay, {}))
        if snapshot.latest.get(relay) in DELIVERED:  # it works again: only a mark stays
            outcomes = {}
        wanted += attention_alert(relay, outcomes, snapshot.needs_attention.get(relay),
                                  thresholds)
        wanted += failure_rate_alert(relay, outcomes, thresholds)
    wanted += backlog_alert(snapshot, thresholds)
    wanted += held_alert(snapshot.held, thresholds)
    wanted += webhook_alerts(snapshot.disabled_webhooks)
    return wanted


def attention_alert(relay: str, outcomes: Mapping[str, int], marked: tuple[str, str] | None,
                    thresholds: Thresholds) -> list[AlertSpec]:
    """The store's mark says why (its guidance is the most specific); held
    attempts in the window say it without a mark."""
    held = outcomes.get(HELD, 0)
    if marked is not None:
        reason, guidance = marked
        detail = (f"{attention_cause(reason, guidance)}; its mail is held"
                  if reason or not login_tried(guidance)
                  else "its mail is held until its credentials are fixed")
    elif held:
        detail = (f"{held} attempt(s) in the last {duration(thresholds.window)} ended with "
                  "the relay's mail held")
        guidance = ""
    else:
        return []
    return [AlertSpec(f"relay.{relay}.needs_attention", Severity.CRITICAL,
                      f"Relay {relay} needs attention", detail,
                      guidance or "relay_needs_attention")]


def failure_rate_alert(relay: str, outcomes: Mapping[str, int],
                       thresholds: Thresholds) -> list[AlertSpec]:
    if not is_failing(outcomes, thresholds):
        return []
    return [AlertSpec(
        f"relay.{relay}.failure_rate", Severity.WARNING, f"Relay {relay} keeps failing",
        f"{failures(outcomes)} of {sum(outcomes.values())} attempts in the last "
        f"{duration(thresholds.window)} did not deliver ({breakdown(outcomes)})",
        "relay_failure_rate")]


def is_failing(outcomes: Mapping[str, int], thresholds: Thresholds) -> bool:
    total = sum(outcomes.values())
    if thresholds.failure_ratio <= 0 or total < thresholds.min_attempts:
        return False
    return failures(outcomes) >= thresholds.failure_ratio * total


def backlog_alert(snapshot: Snapshot, thresholds: Thresholds) -> list[AlertSpec]:
    limit = thresholds.oldest_queued_age
    if limit <= timedelta(0) or snapshot.oldest_pending_at is None:
        return []
    age = snapshot.now - snapshot.oldest_pending_at
    if age < limit:
        return []
    return [AlertSpec(BACKLOG, Severity.WARNING, "Mail is waiting too long",
                      f"the oldest waiting message was accepted {duration(age)} ago "
                      f"(limit {duration(limit)})", "queue_backlog")]


def held_alert(held: int, thresholds: Thresholds) -> list[AlertSpec]:
    if thresholds.held_count <= 0 or held < thresholds.held_count:
        return []
    return [AlertSpec(HELD_MESSAGES, Severity.WARNING, "Messages are held",
                      f"{held} message(s) held, waiting for an operator", "messages_held")]


def webhook_alerts(disabled: Mapping[str, tuple[str, str]]) -> list[AlertSpec]:
    """One alert per disabled endpoint, until it is enabled again or removed."""
    return [AlertSpec(f"webhook.{id}.disabled", Severity.WARNING,
                      f"Webhook endpoint {id} is disabled",
                      f"{url}: {reason}" if reason else url, "webhook_disabled")
            for id, (url, reason) in sorted(disabled.items())]


def changes(wanted: Sequence[AlertSpec], active_keys: Iterable[str]) -> Changes:
    wanted_keys = {spec.key for spec in wanted}
    return Changes(tuple(wanted), tuple(sorted(k for k in set(active_keys) - wanted_keys)))


def stale(wanted: Sequence[AlertSpec], active: Mapping[str, tuple[str, str, str]]
          ) -> tuple[AlertSpec, ...]:
    """Wanted alerts already active whose (title, detail, guidance) changed."""
    return tuple(spec for spec in wanted if spec.key in active
                 and active[spec.key] != (spec.title, spec.detail, spec.guidance))


def breakdown(outcomes: Mapping[str, int]) -> str:
    """'6 deferred, 2 failed' — the failures, most frequent first."""
    bad = [(count, outcome) for outcome, count in outcomes.items()
           if outcome not in DELIVERED and count]
    return ", ".join(f"{count} {outcome}" for count, outcome in sorted(bad, reverse=True))


def duration(delta: timedelta) -> str:
    """A short human duration: 45s, 15m, 2h, 3d."""
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
