"""`off_the_loop`: a large message's pure work runs on a thread, a small one's where
it is (issue 17: the loop keeps answering while 1,000 recipients are decided)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from outbox.turns import LARGE, off_the_loop


def where(*_: object) -> threading.Thread:
    return threading.current_thread()


async def test_small_work_runs_on_the_loops_thread() -> None:
    assert await off_the_loop(LARGE, where, "x") is threading.current_thread()


async def test_large_work_runs_on_another_thread_and_the_loop_goes_on() -> None:
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

    ticking = asyncio.create_task(ticker())
    result = asyncio.create_task(off_the_loop(LARGE + 1, work, 21))
    await asyncio.to_thread(started.wait, 5)
    before = ticks
    await asyncio.sleep(0.05)  # the work is still under way: the loop must still tick
    assert ticks > before and not result.done()
    release.set()
    assert await result == 42
    ticking.cancel()
    assert await off_the_loop(LARGE + 1, where) is not threading.current_thread()


async def test_an_error_of_the_work_reaches_the_caller() -> None:
    def refuse(size: int) -> None:
        raise ValueError(f"refused {size}")

    for size in (1, LARGE + 1):
        with pytest.raises(ValueError, match=f"refused {size}"):
            await off_the_loop(size, refuse, size)
