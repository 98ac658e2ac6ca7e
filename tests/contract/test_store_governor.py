"""The relay governor's shared state on both backends: a relay never seen is open;
a change is read, stepped and written in one transaction, so two nodes racing for
the half-open probe get exactly one probe."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import timedelta

from outbox.core.governor import GovernorPolicy, GovernorState, Signal, State
from outbox.store.base import Store
from tests.contract.conftest import OpenStore
from tests.contract.support import at

POLICY = GovernorPolicy(max_connections=4)


async def test_a_relay_never_seen_is_open(store: Store) -> None:
    assert await store.governor.load_governor_state("default") == GovernorState("default")
    assert await store.governor.governor_states() == ()


async def test_a_change_is_stored_and_listed_by_relay(store: Store) -> None:
    rng = random.Random(1)
    down = await store.governor.change_governor_state(
        "zeta", lambda h: POLICY.after(h, Signal.DOWN, at(0), rng, reason="refused"), at(0))
    await store.governor.change_governor_state(
        "alpha", lambda h: POLICY.after(h, Signal.THROTTLED, at(0), rng, reason="421"), at(0))

    assert down.state(at(1)) is State.BACKING_OFF and down.failures == 1
    assert await store.governor.load_governor_state("zeta") == down
    states = await store.governor.governor_states()
    assert [(s.relay, s.state(at(1)), s.limit) for s in states] == [
        ("alpha", State.THROTTLED, 2), ("zeta", State.BACKING_OFF, 0)]


async def test_two_nodes_racing_for_the_probe_get_one(open_stores: OpenStore) -> None:
    one, two = await open_stores(), await open_stores()
    backed_off = replace(GovernorState("default"), failures=1, backoff_until=at(10))
    await one.governor.change_governor_state("default", lambda _: backed_off, at(0))
    won: list[bool] = []

    def take_probe(health: GovernorState) -> GovernorState:
        if not POLICY.admit(health, at(11)).probe:
            won.append(False)
            return health
        won.append(True)
        return POLICY.claim_probe(health, at(11))

    await asyncio.gather(*(s.governor.change_governor_state("default", take_probe, at(11))
                           for s in (one, two, one, two)))

    assert sorted(won) == [False, False, False, True]
    stored = await two.governor.load_governor_state("default")
    assert stored.probe_until == at(11) + POLICY.probe_window
    assert stored.state(at(11) + timedelta(seconds=1)) is State.PROBING
