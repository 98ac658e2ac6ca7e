"""tests/conftest.py: the long tests head every worker's share, longest first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from tests.conftest import dealt


@dataclass
class Marker:
    args: tuple[Any, ...]


@dataclass
class Item:
    name: str
    long: float | None = None

    def get_closest_marker(self, name: str) -> Marker | None:
        return Marker((self.long,)) if name == "long" and self.long is not None else None


def order(items: list[Item], workers: int) -> list[str]:
    return [cast(Item, i).name for i in dealt(cast(list[pytest.Item], items), workers)]


def test_each_share_as_worksteal_cuts_it_starts_with_its_long_tests() -> None:
    items = [Item(f"t{n}") for n in range(10)]
    items[3].long, items[7].long, items[9].long = 20, 60, 30
    got = order(items, 2)
    # Two workers take 5 of the 10 each: t7 (60 s) and t3 head the first, t9 the second.
    assert len(got) == 10 and sorted(got) == sorted(i.name for i in items)
    assert got[:2] == ["t7", "t3"] and got[5] == "t9"
    assert [n for n in got if n not in {"t3", "t7", "t9"}] == [f"t{n}" for n in
                                                             (0, 1, 2, 4, 5, 6, 8)]


def test_without_long_tests_or_workers_the_order_is_kept() -> None:
    items = [Item(f"t{n}") for n in range(5)]
    assert order(items, 4) == [f"t{n}" for n in range(5)]
    items[4].long = 10
    assert order(items, 1) == ["t4", "t0", "t1", "t2", "t3"]
