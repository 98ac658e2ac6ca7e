"""Ending a relay's back-off when an operator proved it works (`outbox relay test`, the
API's and the UI's "test connection"): the governor state every node shares is set open
as a session that got through set-up would set it, and the mail the back-off held back
is due now, so it goes at the next claim instead of when the back-off would have ended.

The held-back mail is the relay's deferred mail due by the last moment a message can
have been told to wait until: the back-off's end (or the probe's), plus the spread that
`RetryPolicy.wait_for_relay` adds, at most `jitter` times the longest back-off. Mail a
relay's own 4xx put off for longer than that keeps its own schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from outbox.config import RelaySettings, Settings
from outbox.core.governor import GovernorPolicy, GovernorState, Signal
from outbox.delivery.governor import governor_policy
from outbox.store.base import Store
from outbox.worker.policy import retry_policy


@dataclass(frozen=True, slots=True)
class BackoffEnded:
    """What a successful test ended: the relay's back-off (until when, after how many
    failures) and how many messages it held back are due now."""

    until: datetime
    failures: int
    due_now: int


def held_back_until(state: GovernorState, policy: GovernorPolicy, jitter: float) -> datetime:
    """The latest time a message waiting for this back-off can be due."""
    assert state.backoff_until is not None
    end = max(state.backoff_until, state.probe_until or state.backoff_until)
    doubling = policy.first_backoff * 2 ** min(max(state.failures - 1, 0), 30)
    longest = min(doubling, policy.max_backoff) * (1 + policy.jitter)
    return end + longest * jitter + timedelta(seconds=1)


async def end_backoff(store: Store, settings: Settings, relay: RelaySettings,
                      now: datetime) -> BackoffEnded | None:
    """The relay open again and its held-back mail due now; None when it was not
    backing off (nothing to end)."""
    if (await store.governor.load_governor_state(relay.name)).backoff_until is None:
        return None  # most tests: no write, and no row for a relay that never backed off
    policy = governor_policy(relay, settings.delivery)
    before: list[GovernorState] = []

    def opened(state: GovernorState) -> GovernorState:
        before.append(state)  # the state in the transaction, maybe newer than the one read
        if state.backoff_until is None:
            return state
        return policy.after(state, Signal.OK, now, random.Random())

    await store.governor.change_governor_state(relay.name, opened, now)
    state = before[-1]
    if state.backoff_until is None:
        return None
    until = held_back_until(state, policy, retry_policy(settings).jitter)
    due_now = await store.governor.bring_relay_forward(relay.name, now, until)
    return BackoffEnded(state.backoff_until, state.failures, due_now)
