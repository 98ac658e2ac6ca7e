"""How much of a worker's room each relay may take, so one relay's backlog does not
stop the others' mail (head-of-line blocking; Postfix's per-destination concurrency).

A claimed message waits in its relay's session pool for one of its `max_connections`
sessions. Without a bound, a slow relay's backlog filled the worker's `concurrency`
(256) with messages waiting for its two sessions, and mail for a healthy relay stayed
queued behind them for minutes, looking as if nothing was wrong. Now a worker's
attempts for one relay (those waiting for a session and those holding one) are at most
its `share`: a claim takes no more than the relay with the least room left could hold,
and while a relay has none left (it is *busy*), a claim skips the mail whose every
pending recipient is on a busy relay; that mail stays queued.

A claim that skips busy relays walks past their due mail (the recipients table
knows a recipient's relay; the claim's index does not): when one finds less than it
asked for, another skipping the same relays waits for `poll_interval` or for new room
(`Fruitless`), so a long drain through one relay costs one such walk a second.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable

from outbox.config import RelaySettings
from outbox.store.values import Claim

# Attempts a worker keeps per session of a relay: enough that a drain's claims stay a
# batch large. At 8 and 16 a session (32 and 64 attempts to a relay of 4 sessions), a
# drain of 5,000 messages through one relay ran at half to two thirds the rate of an
# unbounded worker; at 32, at the same rate (bench/drain_ab.py with max_connections 4).
WAITING_PER_SESSION = 32


def share(relay: RelaySettings, concurrency: int) -> int:
    """A relay's most attempts in one worker: never more than half its `concurrency`."""
    return max(1, min(WAITING_PER_SESSION * relay.max_connections, concurrency // 2))

Busy = frozenset[str]


class RelayRoom:
    """A worker's attempts per relay, against each relay's bound."""

    def __init__(self, relays: Iterable[RelaySettings], concurrency: int) -> None:
        self._bound = {relay.name: share(relay, concurrency) for relay in relays}
        self._using: Counter[str] = Counter()
        self._of: dict[str, tuple[str, ...]] = {}  # claim token -> its bounded relays

    def using(self, relay: str) -> int:
        return self._using[relay]

    def start(self, claim: Claim) -> None:
        relays = tuple({r.relay for r in claim.message.recipients
                        if not r.status.is_final and r.relay in self._bound})
        self._of[claim.token] = relays
        self._using.update(relays)

    def finish(self, token: str) -> bool:
        """Whether a relay that was busy has room again."""
        freed = False
        for relay in self._of.pop(token, ()):
            self._using[relay] -= 1
            freed |= self._using[relay] == self._bound[relay] - 1
        return freed

    def room(self, done: Collection[str], promised: int) -> tuple[int | None, Busy]:
        """The most a claim may take (None: no bound) and the busy relays, with the
        claims `done` counted as finished and `promised` messages of claims under way
        counted against every relay (any of them may be for it)."""
        freeing = Counter(relay for token in done for relay in self._of.get(token, ()))
        rooms = {relay: bound - self._using[relay] + freeing[relay] - promised
                 for relay, bound in self._bound.items()}
        busy = frozenset(relay for relay, room in rooms.items() if room <= 0)
        open_rooms = [room for room in rooms.values() if room > 0]
        if not open_rooms:
            return (0 if rooms else None), busy
        return min(open_rooms), busy


class Fruitless:
    """Claims that skipped busy relays and found less than they asked: another that
    skips the same relays (or more) waits `interval` seconds, since what it would walk
    past has not changed; one that skips fewer (a relay has room again) may go."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: tuple[Busy, float] | None = None

    def found_short(self, busy: Busy) -> None:
        if busy:
            self._last = (busy, self._clock())

    def may_claim(self, busy: Busy) -> bool:
        if not busy or self._last is None:
            return True
        skipped, at = self._last
        return not busy >= skipped or self._clock() - at >= self._interval
