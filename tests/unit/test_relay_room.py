"""The arithmetic of a worker's room per relay (worker/relay_room.py) at the production
concurrency of 256: each relay's bound, the reserve a claim stops short of, and the
relays with many attempts running that are busy once only the reserve is free."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from outbox.config import RelaySettings
from outbox.core.model import RecipientStatus
from outbox.worker.relay_room import RelayRoom, crowd, reserve, share

CONCURRENCY = 256


def relays() -> list[RelaySettings]:
    return [RelaySettings(name=name, host="127.0.0.1", port=25, max_connections=4)
            for name in ("one", "two", "fast")]


def claim(token: str, relay: str) -> Any:
    """What RelayRoom reads of a claim: its token and its pending recipients' relays."""
    recipient = SimpleNamespace(relay=relay, status=RecipientStatus.PENDING)
    return SimpleNamespace(token=token, message=SimpleNamespace(recipients=[recipient]))


def run(room: RelayRoom, relay: str, count: int) -> list[str]:
    tokens = [f"{relay}-{n}" for n in range(count)]
    for token in tokens:
        room.start(claim(token, relay))
    return tokens


def test_the_defaults() -> None:
    assert [share(relay, CONCURRENCY) for relay in relays()] == [128, 128, 128]
    assert (reserve(CONCURRENCY), crowd(CONCURRENCY)) == (64, 16)


def test_a_claim_stops_short_of_the_reserve() -> None:
    room = RelayRoom(relays(), CONCURRENCY)
    assert room.room((), 0, free=256) == (128, frozenset())  # the relay's bound
    run(room, "one", 128)
    assert room.room((), 0, free=128) == (64, frozenset({"one"}))  # 128 - 64 free


def test_once_only_the_reserve_is_free_a_relay_with_many_attempts_is_busy() -> None:
    room = RelayRoom(relays(), CONCURRENCY)
    run(room, "one", 128)
    run(room, "two", 64)
    run(room, "fast", 15)
    limit, busy = room.room((), 0, free=CONCURRENCY - 128 - 64 - 15)
    assert busy == {"one", "two"} and limit == 49  # the fast relay's mail only
    run(room, "fast", 1)
    assert room.room((), 0, free=48)[1] == {"one", "two", "fast"}


def test_a_crowded_relay_going_under_crowd_wakes_the_claims() -> None:
    room = RelayRoom(relays(), CONCURRENCY)
    run(room, "one", 128)
    tokens = run(room, "two", 64)
    # Free slots above the reserve: no wake-up for crossing under `crowd`.
    for token in tokens[:47]:
        assert not room.finish(token, free=64 + 1)
    assert room.using("two") == 17
    assert not room.finish(tokens[47], free=64 + 1)  # 16 left
    assert room.finish(tokens[48], free=64)  # 15 left, only the reserve free: wake up


def test_a_narrowed_relay_is_busy_at_its_narrowed_bound() -> None:
    """After its lane gave mail back (delivery/lane.py), a relay's share is narrowed: its
    mail beyond that is skipped, and the claim stops at its room."""
    narrowed = {"one": 16}
    room = RelayRoom(relays(), CONCURRENCY, narrowed=narrowed.get)
    assert room.bound("one") == 16 and room.bound("two") == 128
    assert room.room((), 0, free=256) == (16, frozenset())
    tokens = run(room, "one", 16)
    assert room.room((), 0, free=240) == (128, frozenset({"one"}))
    assert room.finish(tokens[0], free=241)  # back under its narrowed bound: claims wake
    narrowed.clear()  # widened past its share: the share binds again
    assert room.room((), 0, free=241)[1] == frozenset() and room.bound("one") == 128
