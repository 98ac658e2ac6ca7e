"""A relay's lane (delivery/lane.py): first come, first through, `width` at once; an
attempt that waits past its limit is `Overdue` with an estimate of its turn, and the
relay's share narrows for a while after. The waits here are a fraction of a second, the
lane's logic being the same at any length; tests/integration/test_relay_lane.py covers
the production `WAIT` end to end."""

from __future__ import annotations

import asyncio

import pytest

from outbox.config import RelaySettings
from outbox.delivery.lane import WAIT, Lane, Overdue, lane_width


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def relay(**given: object) -> RelaySettings:
    return RelaySettings(name="r", host="127.0.0.1", port=25, **given)  # type: ignore[arg-type]


def test_two_attempts_per_session_and_no_more_than_the_rate_lets_go_in_a_wait() -> None:
    assert lane_width(relay()) == 8  # four sessions, the default
    assert lane_width(relay(max_connections=1)) == 2
    assert lane_width(relay(rate="6/m")) == 1  # one a second: one in WAIT (10 s)
    assert lane_width(relay(rate="30/m")) == 5
    assert lane_width(relay(rate="100/s")) == 8


async def test_width_at_once_first_come_first_through() -> None:
    lane, order, inside, peak = Lane(2), [], [0], [0]

    async def attempt(n: int) -> None:
        async with lane.turn():
            order.append(n)
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            await asyncio.sleep(0.01)
            inside[0] -= 1

    await asyncio.gather(*(attempt(n) for n in range(7)))
    assert order == list(range(7)) and peak[0] == 2


async def test_an_attempt_past_its_wait_is_overdue_with_its_turn_estimated() -> None:
    clock = Clock()
    lane = Lane(1, clock)
    async with lane.turn():  # one attempt of 6 s: the pace
        clock.now += 6
    held = asyncio.Event()

    async def holder() -> None:
        async with lane.turn():
            await held.wait()

    task = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(_enter(lane, 0.05)) for _ in range(3)]
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, Overdue) for r in results), results
    # The first had the holder ahead, the last the holder and two waiters, were they to
    # wait on: one at a time, at the pace seen (6 s a turn), or at least WAIT, since
    # none went through while they waited that long.
    assert [r.turn_in for r in results] == [WAIT, 2 * WAIT, 3 * WAIT]  # type: ignore[union-attr]
    assert lane.waiting == 0
    held.set()
    await task
    async with lane.turn(0.05):  # the lane is free again: no one is left waiting
        pass


async def _enter(lane: Lane, wait: float | None) -> None:
    async with lane.turn(wait):
        pass


async def test_after_an_overdue_the_share_narrows_to_what_passes_in_half_a_wait() -> None:
    clock = Clock()
    lane = Lane(8, clock)
    async with lane.turn():
        clock.now += 0.5  # slowish: half a second from the lane to the end
    assert lane.narrowed() is None  # none overdue yet: the share binds
    holders = [asyncio.create_task(_hold(lane)) for _ in range(lane.width)]
    await asyncio.sleep(0)
    with pytest.raises(Overdue):
        await _enter(lane, 0.01)
    # None went through in a WAIT: the pace is at least that, 8 through every 10 s, and
    # 4 more in WAIT / 2.
    assert lane.narrowed() == 8 + 4
    for task in holders:
        task.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    for _ in range(40):  # it gets faster: 50 ms each
        async with lane.turn():
            clock.now += 0.05
    narrowed = lane.narrowed()
    assert narrowed is not None and narrowed > 128  # past any share: the share binds


async def test_an_overdue_waiter_reads_the_pace_from_what_went_through_while_it_waited(
        ) -> None:
    """A quick relay with a long backlog: attempts go through while one waits past its
    limit. Its pace is what went through in its wait, not `WAIT` a place (stop 61: mail
    of a relay taking 20 a second went back for about 40 s, its turn a few seconds off).
    """
    lane = Lane(1, Clock())
    releases = [asyncio.Event() for _ in range(4)]

    async def attempt(n: int) -> None:
        async with lane.turn(None):
            await releases[n].wait()

    ahead = [asyncio.create_task(attempt(n)) for n in range(4)]
    await asyncio.sleep(0)
    # A wait of a second, so that a stalled loop on a loaded machine cannot end it before
    # the two below have gone through.
    late = asyncio.create_task(_enter(lane, 1.0))
    await asyncio.sleep(0)
    for n in range(2):  # two go through while it waits 1 s: 0.5 s a place
        releases[n].set()
        await ahead[n]
    with pytest.raises(Overdue):
        await late
    assert lane.narrowed() == 1 + int(WAIT / 2 / 0.5)  # before: 1, at WAIT a place
    for n in range(2, 4):
        releases[n].set()
    await asyncio.gather(*ahead)


async def _hold(lane: Lane) -> None:
    async with lane.turn():
        await asyncio.sleep(60)


async def test_a_wait_of_none_is_never_overdue() -> None:
    lane = Lane(1)
    holder = asyncio.create_task(_hold(lane))
    await asyncio.sleep(0)
    probe = asyncio.create_task(_enter(lane, None))
    await asyncio.sleep(0.1)
    assert not probe.done()
    holder.cancel()
    await probe


async def test_a_waiter_cancelled_with_its_turn_in_hand_passes_it_on() -> None:
    lane = Lane(1)
    release = asyncio.Event()
    waiters: list[asyncio.Task[None]] = []

    async def first() -> None:
        async with lane.turn():
            await release.wait()
        waiters[0].cancel()  # handed the turn just now, it has not run: cancelled with it

    one = asyncio.create_task(first())
    await asyncio.sleep(0)
    waiters += [asyncio.create_task(_enter(lane, None)) for _ in range(2)]
    await asyncio.sleep(0)
    release.set()
    await one
    await asyncio.wait_for(waiters[1], 1)  # the turn went on to the next
    assert waiters[0].cancelled()
    async with lane.turn(0.05):
        pass


def test_the_help_and_the_docs_name_the_wait_in_force() -> None:
    """`outbox relay ls --help` and docs/troubleshooting.md say how long claimed mail
    waits in line; they must say the `WAIT` the lane uses."""
    from pathlib import Path

    from outbox.cli.relays import list_relays

    assert f"{WAIT:g} s at most" in (list_relays.__doc__ or "")
    docs = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
    assert f"has waited {WAIT:g} seconds for its turn" in docs.read_text()
