"""`outbox doctor`'s check of a relay's mail that is due but not being delivered.

A worker gives one relay at most a share of its concurrency (worker/relay_room.py), and
its claims skip the mail of a relay whose share is full: a slow relay's due mail then
stays `queued` while the relay's other checks pass. An idle worker looks at the queue
every `poll_interval` and new room wakes it at once, so mail due for longer than a few
of those waits for one of the relay's sessions (or for a worker: none may be running);
so does a backlog of `WAITING_MANY`, however young. Pure, like `checks.py`: the figures
come from the store's `stats(now)` (`QueueStats.due_by_relay`).
"""

from __future__ import annotations

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.alerting import duration
from outbox.ops.checks import Check, QueueObservation, passed, warned

WAITING_POLLS = 5
WAITING_MANY = 1000


def waiting_check(relay: RelaySettings, queue: QueueObservation | None,
                  delivery: DeliverySettings) -> Check | None:
    """The relay's mail due now and not being delivered; None when there is none."""
    due = queue.stats.due_by_relay.get(relay.name) if queue is not None else None
    if due is None or queue is None:
        return None
    name, waited = f"relay {relay.name}: waiting", queue.now - due.oldest_due_at
    detail = (f"{due.count} message(s) due now, not being delivered yet (the oldest for "
              f"{duration(waited)}; max_connections {relay.max_connections})")
    if waited < WAITING_POLLS * delivery.poll_interval and due.count < WAITING_MANY:
        return passed(name, detail)
    return warned(name, detail, f"{_limit(relay, delivery)} Each attempt's time is in the "
                  "log (`relay answered`, `seconds`). If every relay's mail waits, check that "
                  "`outbox serve` or `outbox worker` is running.")


def _limit(relay: RelaySettings, delivery: DeliverySettings) -> str:
    """The step for the limit in force. A worker gives a relay at most half its
    concurrency (worker/relay_room.py): below max_connections, that half is what binds,
    and more sessions would change nothing (found by a stranger pass); a rate binds
    first."""
    if relay.rate:
        return (f"Relay {relay.name} is limited to {relay.rate} (its rate): raise it if the "
                "relay allows more.")
    if delivery.concurrency // 2 < relay.max_connections:
        return (f"A worker gives relay {relay.name} at most half of [delivery] concurrency "
                f"({delivery.concurrency}), fewer than its max_connections: raise "
                "concurrency.")
    return (f"Raise max_connections of relay {relay.name} if the relay allows more sessions; "
            "else it is slow to answer.")
