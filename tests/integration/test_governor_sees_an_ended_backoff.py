"""A worker's relay governor reads the shared state again before it holds a message back
for a back-off: one that an operator ended on another node (`outbox relay test`, through
`service.relay_backoff.end_backoff`) lets the message go at once, not after the rest of
the back-off the node last saw (its look at the shared state is seconds old)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from outbox.clock import utcnow
from outbox.config import RelaySettings, Settings
from outbox.core.governor import GovernorState
from outbox.delivery.governor import RelayGovernor
from outbox.service.relay_backoff import end_backoff
from outbox.store.factory import open_store


async def test_an_ended_backoff_admits_the_next_session_at_once(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/outbox.db")
    await store.migrate()
    now = utcnow()
    relay = RelaySettings(name="r", host="127.0.0.1", port=2525, security="none")
    settings = Settings(relays=[relay])
    # The node's monotonic clock stands still: its look at the shared state never expires.
    governor = RelayGovernor(relay, settings.delivery, store, wall=lambda: now,
                             clock=lambda: 100.0)
    try:
        def down(state: GovernorState) -> GovernorState:
            return replace(state, failures=1, backoff_until=now + timedelta(minutes=10),
                           reason="connection refused")

        await store.governor.change_governor_state("r", down, now)
        assert not (await governor.admit()).go  # the node has seen the back-off

        ended = await end_backoff(store, settings, relay, now)  # another node's relay test

        assert ended is not None and ended.failures == 1
        admission = await governor.admit()
        assert admission.go and not admission.probe
        assert await end_backoff(store, settings, relay, now) is None  # nothing left to end
    finally:
        await store.close()
