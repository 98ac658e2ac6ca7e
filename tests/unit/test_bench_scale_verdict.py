"""bench/scale.py's verdict: each size against the first size of the same round, and the
median of the rounds decides (the module docstring)."""

from __future__ import annotations

import pytest
from bench.scale import Checkpoint, report

SIZES = (10_000, 1_000_000)


def point(queued: int, ms: float, drain: float = 1000.0) -> Checkpoint:
    seconds = [ms / 1000] * 5
    return Checkpoint(queued, claim=seconds, post=seconds, first_page=seconds,
                      deep_page=seconds, drain=drain)


def rounds(*pairs: tuple[float, float]) -> list[list[Checkpoint]]:
    """One round per (ms at the first size, ms at the second size)."""
    return [[point(SIZES[0], small), point(SIZES[1], large)] for small, large in pairs]


def verdict(capsys: pytest.CaptureFixture[str], measured: list[list[Checkpoint]]) -> str:
    report("sqlite", measured, drain=1000)
    return capsys.readouterr().out.splitlines()[-1]


def test_one_slow_round_does_not_decide(capsys: pytest.CaptureFixture[str]) -> None:
    # x2.00 in one round, x1.00 and x1.10 in the others: the median is x1.10.
    line = verdict(capsys, rounds((5, 10), (5, 5), (5, 5.5)))
    assert "claim: flat (x1.10-x1.10; at 1,000,000 the rounds were x2.00 x1.00 x1.10)" in line
    assert "NOT flat" not in line


def test_a_growth_in_most_rounds_is_not_flat(capsys: pytest.CaptureFixture[str]) -> None:
    line = verdict(capsys, rounds((5, 6.5), (5, 5), (5, 7)))
    assert "POST: NOT flat (x1.30-x1.30; at 1,000,000 the rounds were x1.30 x1.00 x1.40)" in line


def test_each_round_is_compared_with_itself(capsys: pytest.CaptureFixture[str]) -> None:
    # The machine ran twice as slowly from the second round on: every size with it.
    # Against the first round's smaller size the larger one read x2.00 in two rounds of
    # three; against its own round's, x1.00 in each.
    line = verdict(capsys, rounds((5, 5), (10, 10), (10, 10)))
    assert "NOT flat" not in line
    assert "list deep page: flat (x1.00-x1.00" in line


def test_a_faster_size_is_flat_and_the_drain_is_a_rate(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    # Draining at half the rate costs twice the time per message; latency halved is flat.
    measured = [[point(SIZES[0], 5, drain=1000), point(SIZES[1], 2.5, drain=500)]
                for _ in range(3)]
    line = verdict(capsys, measured)
    assert "claim: flat (x0.50-x0.50" in line
    assert "drain rate: NOT flat (x2.00-x2.00" in line
