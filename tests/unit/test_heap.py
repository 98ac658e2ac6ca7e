"""runtime/heap.py: what exists when start-up ends is out of the collector's sight."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from outbox.runtime import heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def tracked(thing: object) -> bool:
    """Whether a collection of any generation would walk `thing`."""
    return any(o is thing for o in gc.get_objects())


@pytest.mark.usefixtures("unfrozen")
def test_settle_freezes_what_exists_and_leaves_what_comes_after_to_the_collector() -> None:
    before = [object()]
    assert tracked(before) and heap.frozen() == 0

    heap.settle()

    assert not tracked(before)
    assert heap.frozen() > 1000  # a test process holds far more than that
    after = [object()]
    assert tracked(after)
