"""A relay's lane in one delivery process: how many of its attempts go on at once to
wait for a session (or a token of the relay's rate), and how long the others wait for
their turn before their message goes back to the queue.

A worker claims up to a relay's share of its attempts (worker/relay_room.py: 128 at the
defaults), and a claimed message shows `sending`, is not counted as waiting and cannot
be cancelled. Behind a slow relay (four sessions, 5 s per message) most of those waited
minutes for a session that way (found by a stranger pass). Now at most `width` of a
relay's attempts are past its lane; one that has waited `WAIT` seconds for its turn is
`Overdue`: nothing of it was sent, and the gate gives its message back as deferred until
about when its turn would have come (`turn_in`), with no attempt spent. Meanwhile it can
be cancelled, and `outbox queue ls --relay NAME` lists it.

A relay fast enough for its backlog never keeps an attempt `WAIT` seconds in the lane:
at 100 messages a second, 128 attempts are through in about a second.

Once an attempt was overdue, the worker would claim the relay's other due mail at once
(its share has room again), only for it to wait and go back in turn. So from then on the
lane narrows the relay's share in the worker (`narrowed`): to what the lane lets through
in half of `WAIT` at the pace seen (`width` at a time, each `pace` seconds past the
lane), so that what a worker claims of the relay waits for its turn about `WAIT / 2` at
most. The mail beyond it stays `queued`, where it counts as waiting and can be
cancelled. A relay fast enough for its backlog is narrowed to more than its share, which
then binds. Before any overdue nothing is narrowed: a claim of a quick relay's backlog
stays a batch large however the pace reads while the machine is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from outbox.config import RelaySettings

# Seconds an attempt waits for its turn before its message goes back: long enough that a
# relay taking 13 messages a second gets through a claim of 128 without one going back
# (at 5 s, a loaded CI machine's own loopback relay fell behind that: tests/integration/
# test_claim_rounds.py saw 4 of 700 go back), short enough that `sending` stays "now".
WAIT = 10.0
SMOOTHING = 0.2  # weight of the newest attempt's time past the lane in the average
PER_SESSION = 2  # attempts past the lane per session: one in it, one ready for it


def lane_width(relay: RelaySettings) -> int:
    """Attempts of this relay past its lane at once: two per session, and no more than
    its `rate` lets go in `WAIT` seconds (each of those waits for a token)."""
    width = PER_SESSION * relay.max_connections
    if relay.rate:
        width = min(width, math.ceil(relay.rate_per_minute / 60 * WAIT))
    return max(1, width)


class Overdue(Exception):
    """An attempt waited `WAIT` seconds for its turn; `turn_in`: about how many seconds
    from now its turn would come, from the attempts ahead of it and their pace."""

    def __init__(self, turn_in: float) -> None:
        super().__init__(f"waited {WAIT:g}s for a turn; about {turn_in:.0f}s to go")
        self.turn_in = turn_in


class Lane:
    """First come, first through; safe to use from many tasks of one event loop."""

    def __init__(self, width: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.width = width
        self._clock = clock
        self._through = 0  # attempts past the lane now
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._tickets = 0  # waiters so far, each numbered as it comes
        self._handed = 0  # the number of the last waiter given its turn
        self._pace: float | None = None  # average seconds an attempt spends past the lane
        self._finished = 0  # attempts through the lane and done, so far
        self._overdue = False  # an attempt waited `WAIT`: from then on the share narrows

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def narrowed(self) -> int | None:
        """The most attempts a worker should give the relay, or None before any was
        overdue: those past the lane and those it lets through in `WAIT / 2`."""
        if self._pace is None or not self._overdue:
            return None
        return self.width + int(WAIT / 2 * self.width / max(self._pace, 1e-3))

    @asynccontextmanager
    async def turn(self, wait: float | None = WAIT) -> AsyncIterator[None]:
        """Past the lane for the block; `Overdue` after `wait` seconds (None: no limit)."""
        await self._enter(wait)
        started = self._clock()
        try:
            yield
        finally:
            spent = self._clock() - started
            self._pace = spent if self._pace is None else (
                self._pace + SMOOTHING * (spent - self._pace))
            self._finished += 1
            self._leave()

    async def _enter(self, wait: float | None) -> None:
        if self._through < self.width and not self._waiting:
            self._through += 1
            return
        place = asyncio.get_running_loop().create_future()
        self._tickets += 1
        ticket = self._tickets
        self._waiting.append((ticket, place))
        finished_before = self._finished
        try:
            async with asyncio.timeout(wait):
                await place
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ValueError):
                self._waiting.remove((ticket, place))
            if place.done() and not place.cancelled():
                if isinstance(exc, TimeoutError):
                    return  # its turn came as the time ran out: take it
                self._leave()  # cancelled with its turn in hand: pass the turn on
            if isinstance(exc, TimeoutError):
                assert wait is not None  # only a limited wait times out
                self._pace = self._pace_over(wait, self._finished - finished_before)
                self._overdue = True
                # Those that came before it and leave with it count as ahead: their
                # turns come first, so a batch that waited together goes back spread out.
                raise Overdue(self.turn_in(ticket - self._handed - 1)) from None
            raise

    def _pace_over(self, waited: float, finished: int) -> float:
        """The pace an overdue waiter saw: `finished` attempts done while it waited
        `waited` seconds, `width` at a time. None done: at least `WAIT`, until the next
        to go through says otherwise (the first overdue batch of a slow relay comes
        before anything went through). Measured over the wait, not the smoothed pace:
        a floor of `WAIT` whatever went through read a quick relay (20 a second) with a
        long backlog as one message every 10 s per place, and sent its mail back for
        about 40 s where its turn was a few seconds off (stop 61)."""
        if finished == 0:
            return max(self._pace or 0.0, WAIT)
        return self.width * waited / finished

    def _leave(self) -> None:
        """The turn goes to the first waiter still waiting, else back to the lane."""
        while self._waiting:
            ticket, place = self._waiting.popleft()
            if not place.done():
                place.set_result(None)
                self._handed = ticket
                return
        self._through -= 1

    def turn_in(self, ahead: int) -> float:
        """Seconds until an attempt with `ahead` others before it would be through: the
        attempts past the lane and those ahead, at the pace seen so far."""
        pace = self._pace if self._pace is not None else WAIT
        return max(1.0, (ahead + self._through) * pace / self.width)
