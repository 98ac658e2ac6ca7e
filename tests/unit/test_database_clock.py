"""The database clock: this machine's wall clock corrected by the measured offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from outbox.clock import DatabaseClock

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def observed(clock: DatabaseClock, server_ahead: float, round_trip: float,
             noise: float = 0.0) -> None:
    """One measurement: the server is `server_ahead` s ahead; the reply took
    `round_trip` s and arrived `noise` s off the midpoint."""
    before = clock.wall()
    after = before + timedelta(seconds=round_trip)
    server = before + timedelta(seconds=round_trip / 2 + server_ahead + noise)
    clock.observe(server, before, after)


def test_the_offset_is_the_servers_time_at_the_midpoint_of_the_round_trip() -> None:
    wall = Wall()
    clock = DatabaseClock(wall)
    observed(clock, server_ahead=600, round_trip=0.002)
    assert abs(clock.offset.total_seconds() - 600) < 1e-6
    assert clock() == T0 + timedelta(seconds=600)


def test_no_answer_leaves_the_offset_alone() -> None:
    clock = DatabaseClock(Wall())
    observed(clock, server_ahead=5, round_trip=0.01)
    clock.observe(None, T0, T0)
    assert abs(clock.offset.total_seconds() - 5) < 1e-6


def test_a_slow_sample_that_agrees_within_its_uncertainty_does_not_move_the_offset() -> None:
    clock = DatabaseClock(Wall())
    observed(clock, server_ahead=0, round_trip=0.002)
    # A loaded machine: 400 ms round trip, reply 150 ms off the midpoint.
    observed(clock, server_ahead=0, round_trip=0.4, noise=-0.15)
    assert abs(clock.offset.total_seconds()) < 0.002


def test_a_clock_that_really_moved_is_followed_even_by_a_slow_sample() -> None:
    clock = DatabaseClock(Wall())
    observed(clock, server_ahead=0, round_trip=0.002)
    observed(clock, server_ahead=30, round_trip=0.4)  # the database server was stepped
    assert abs(clock.offset.total_seconds() - 30) < 1e-6


def test_a_more_precise_sample_replaces_a_rougher_one() -> None:
    clock = DatabaseClock(Wall())
    observed(clock, server_ahead=1.0, round_trip=0.4)
    observed(clock, server_ahead=1.1, round_trip=0.002)
    assert abs(clock.offset.total_seconds() - 1.1) < 1e-6


def test_it_never_goes_back_when_the_offset_shrinks() -> None:
    wall = Wall()
    clock = DatabaseClock(wall)
    observed(clock, server_ahead=10, round_trip=0.002)
    first = clock()
    observed(clock, server_ahead=0, round_trip=0.002)  # the server was stepped back 10 s
    wall.now += timedelta(seconds=1)
    assert clock() == first  # held, not 9 s in the past
    wall.now += timedelta(seconds=10)
    assert clock() == T0 + timedelta(seconds=11)  # and moves again once time catches up
