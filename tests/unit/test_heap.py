"""runtime/heap.py: what exists when start-up ends is out of the collector's sight."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from outbox.runtime import heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


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


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: reference counting alone never frees it


@pytest.mark.usefixtures("unfrozen")
def test_after_settle_young_collections_come_every_young_allocations_and_free_cycles() -> None:
    heap.settle()
    gc.collect()  # counting starts from nothing
    gone = weakref.ref(Node())

    held = [[] for _ in range(1_000)]  # past Python's 700: it would have collected
    assert gone() is not None

    held += [[] for _ in range(heap.YOUNG)]
    assert gone() is None
