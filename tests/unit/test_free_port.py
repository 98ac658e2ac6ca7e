"""The tests' port picker: a pytest-xdist worker hands out ports from a slice of its own
and never the same one twice in a row of 1,000 (tests/processes.py `free_port`)."""

from __future__ import annotations

import pytest
from tests import processes


@pytest.mark.parametrize("worker", ["gw0", "gw3"])
def test_each_worker_draws_from_its_own_slice_without_repeats(
        monkeypatch: pytest.MonkeyPatch, worker: str) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    monkeypatch.setattr(processes, "_given", processes.deque(maxlen=1000))
    low, high = processes._my_slice()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    other_low, other_high = processes._my_slice()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    drawn = [processes.free_port() for _ in range(300)]
    assert all(low <= port < high for port in drawn)
    assert high <= other_low or other_high <= low, "slices of two workers overlap"
    assert len(set(drawn)) == len(drawn)
