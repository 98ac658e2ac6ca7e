"""The long-running processes' event loop (outbox.event_loop): uvloop's where it is
installed (a dependency on Linux, so here), asyncio's where it is not."""

from __future__ import annotations

import sys

import pytest

from outbox.event_loop import loop_name, run


def loop_of_run() -> str:
    seen: list[str] = []

    async def main() -> None:
        seen.append(loop_name())

    run(main())
    return seen[0]


def test_the_processes_run_on_uvloop_where_it_is_installed() -> None:
    assert loop_of_run() == "uvloop"


def test_without_uvloop_they_run_on_asyncio_s_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert loop_of_run() == "asyncio"
