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

A relay's share is up to half the worker, so two slow relays of four sessions or more
could take all of it between them (a third's mail then waited behind both, as above).
So the worker keeps its last quarter (`reserve`) for relays with few attempts running:
a claim stops short of it, and once no more than that is free, a relay with `crowd`
attempts or more running (a slow relay's backlog, by then) is busy too: the last slots
go to the mail of the others.
A healthy relay's attempts end as fast as they start, so it stays under `crowd`.

Once one of a relay's attempts waited too long for a session in the gate's lane
(delivery/lane.py), its share is `narrowed` to what the lane gets through in a few
seconds at the pace seen, so that its due mail waits queued rather than claimed and
given back; a relay that is quick again is narrowed past its share, which then binds.

A claim that skips busy relays reads each other relay's due mail on its own index
range (store/sql/busy_claim.py), and walks only past busy relays' mail that also has
recipients on another relay. When one finds less than it asked for, another skipping
the same relays waits for `poll_interval` or for new room (`Fruitless`): what it would
find has not changed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping

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


def reserve(concurrency: int) -> int:
    """The worker's last slots, kept for relays with fewer than `crowd` attempts."""
    return concurrency // 4


def crowd(concurrency: int) -> int:
    """Attempts of one relay that make it busy while only the reserve is free."""
    return max(1, reserve(concurrency) // 4)


def narrowing(deliverers: Mapping[str, object]) -> Callable[[str], int | None]:
    """What each relay's gate narrows its share to (delivery/lane.py); a deliverer
    without a lane (a test's) narrows nothing."""
    def narrowed(relay: str) -> int | None:
        look = getattr(deliverers.get(relay), "narrowed", None)
        return look() if look is not None else None
    return narrowed


class RelayRoom:
    """A worker's attempts per relay, against each relay's bound."""

    def __init__(self, relays: Iterable[RelaySettings], concurrency: int,
                 narrowed: Callable[[str], int | None] = lambda relay: None) -> None:
        self._share = {relay.name: share(relay, concurrency) for relay in relays}
        self._narrowed = narrowed
        self._reserve, self._crowd = reserve(concurrency), crowd(concurrency)
        self._using: Counter[str] = Counter()
        self._of: dict[str, tuple[str, ...]] = {}  # claim token -> its bounded relays

    def using(self, relay: str) -> int:
        return self._using[relay]

    def bound(self, relay: str) -> int:
        """The relay's share, or less while its lane narrows it."""
        narrowed = self._narrowed(relay)
        share = self._share[relay]
        return share if narrowed is None else min(share, narrowed)

    def start(self, claim: Claim) -> None:
        relays = tuple({r.relay for r in claim.message.recipients
                        if not r.status.is_final and r.relay in self._share})
        self._of[claim.token] = relays
        self._using.update(relays)

    def finish(self, token: str, free: int) -> bool:
        """Whether a relay that was busy has room again, `free` the worker's free slots
        with this attempt's counted."""
        freed = False
        for relay in self._of.pop(token, ()):
            self._using[relay] -= 1
            freed |= self._using[relay] == self.bound(relay) - 1
            freed |= free <= self._reserve and self._using[relay] == self._crowd - 1
        return freed

    def room(self, done: Collection[str], promised: int, free: int
             ) -> tuple[int | None, Busy]:
        """The most a claim may take (None: no bound) and the busy relays, with the
        claims `done` counted as finished and `promised` messages of claims under way
        counted against every relay (any of them may be for it); `free`: the worker's
        free slots, so counted."""
        freeing = Counter(relay for token in done for relay in self._of.get(token, ()))
        running = {relay: self._using[relay] - freeing[relay] for relay in self._share}
        rooms = {relay: self.bound(relay) - running[relay] - promised
                 for relay in self._share}
        crowding = free <= self._reserve
        busy = frozenset(relay for relay, room in rooms.items()
                         if room <= 0 or (crowding and running[relay] >= self._crowd))
        open_rooms = [room for relay, room in rooms.items() if relay not in busy]
        if not open_rooms:
            return (0 if rooms else None), busy
        # Until the reserve is reached, a claim may take any relay's mail, so it stops
        # short of the reserve: a claim of the whole worker could be one slow relay's.
        return min(*open_rooms, free if crowding else free - self._reserve), busy


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
