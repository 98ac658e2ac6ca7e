"""The order tests start in, so that every test worker finishes at about the same time.

A few tests take 15-60 s of wall clock whatever the machine: they wait out production
defaults (a 60 s command timeout, SQLite's 30 s busy timeout) or kill and restart
processes many times. Started near the end, one of them ran alone for its last half
minute while the other workers had finished (stop 25: the machine 66-95 % idle over
the run's last 30 s). pytest-xdist's `worksteal` scheduler hands each worker a
contiguous share of the collection and later steals from the end of the longest
queue, so the tests marked `long` go first in every share, longest first, dealt in
turn; the rest keep their order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import islice

import pytest

LONG = "long"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{LONG}(seconds): a test that takes about this many "
                                       "seconds of wall clock; started first (tests/conftest.py)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    items[:] = dealt(items, workers)


def seconds(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker(LONG)
    return float(marker.args[0]) if marker is not None else None


def dealt(items: Sequence[pytest.Item], workers: int) -> list[pytest.Item]:
    """`items` in the order that puts the long ones at the head of every worker's share,
    the shares cut as worksteal cuts them (each idle worker in turn takes
    len(pending) // workers left)."""
    long = sorted((i for i in items if seconds(i) is not None),
                  key=lambda i: -(seconds(i) or 0.0))
    if not long:
        return list(items)
    rest = iter([i for i in items if seconds(i) is None])
    order: list[pytest.Item] = []
    pending = len(items)
    for worker in range(workers):
        share = pending // (workers - worker)
        first = long[worker::workers]
        order += first
        order += islice(rest, max(0, share - len(first)))
        pending -= share
    order += rest
    return order
