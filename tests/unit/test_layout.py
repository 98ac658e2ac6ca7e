"""The layout rules of docs/architecture.md, checked: no module over 400 lines and
no storage protocol over 25 verbs, so that each stays readable in one sitting."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest

from outbox.store import base

SRC = Path(__file__).resolve().parents[2] / "src" / "outbox"
MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 400, f"{path.relative_to(SRC)} has {lines} lines: split it by concept"


@pytest.mark.parametrize("facet, protocol", sorted(typing.get_type_hints(base.Store).items()))
def test_no_storage_protocol_has_over_25_verbs(facet: str, protocol: type) -> None:
    verbs = [name for name, member in vars(protocol).items()
             if inspect.isfunction(member) and not name.startswith("_")]
    assert 0 < len(verbs) <= 25, f"store.{facet} has {len(verbs)} verbs"


def test_the_layout_check_sees_the_whole_package() -> None:
    assert len(MODULES) > 150 and SRC / "core" / "governor.py" in MODULES
