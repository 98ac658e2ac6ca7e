"""`OffTheLoop` without its process: a small message's pure work runs where it is, a
large one's on a thread while no planning process runs (before `start`, after
`close`), and the work's error reaches the caller (issue 17). The process itself:
tests/integration/test_planning_process.py."""

from __future__ import annotations

import asyncio
import threading

import pytest

from outbox.turns import LARGE, OffTheLoop


def where(*_: object) -> threading.Thread:
    return threading.current_thread()


async def test_small_work_runs_on_the_loops_thread() -> None:
    assert await OffTheLoop().run(LARGE, where, "x") is threading.current_thread()


async def test_large_work_without_a_process_runs_on_another_thread_and_the_loop_goes_on(
) -> None:
    started, release = threading.Event(), threading.Event()
    ticks = 0

    def work(value: int) -> int:
        started.set()
        assert release.wait(5)
        return value * 2

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    planning = OffTheLoop()
    assert not planning.in_a_process(LARGE + 1) and planning.pid is None
    ticking = asyncio.create_task(ticker())
    result = asyncio.create_task(planning.run(LARGE + 1, work, 21))
    await asyncio.to_thread(started.wait, 5)
    before = ticks
    await asyncio.sleep(0.05)  # the work is still under way: the loop must still tick
    assert ticks > before and not result.done()
    release.set()
    assert await result == 42
    ticking.cancel()
    assert await planning.run(LARGE + 1, where) is not threading.current_thread()


async def test_after_close_start_starts_nothing() -> None:
    planning = OffTheLoop()
    planning.close()
    planning.start()
    await asyncio.sleep(0.1)
    assert planning.pid is None
    assert await planning.run(LARGE + 1, where) is not threading.current_thread()


async def test_an_error_of_the_work_reaches_the_caller() -> None:
    def refuse(size: int) -> None:
        raise ValueError(f"refused {size}")

    for size in (1, LARGE + 1):
        with pytest.raises(ValueError, match=f"refused {size}"):
            await OffTheLoop().run(size, refuse, size)
