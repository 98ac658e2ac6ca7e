"""`OffTheLoop` without its process: a small message's pure work runs where it is, a
large one's on a thread while no planning process runs (before `start`, after
`close`), and the work's error reaches the caller (issue 17); which messages are light
enough to hand over to the process. The process itself:
tests/integration/test_planning_process.py."""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from typing import Any

import pytest

from outbox.core.attachments import AttachmentIn
from outbox.core.compose import Submission
from outbox.service.pacing import HAND_OVER, portable
from outbox.turns import LARGE, OffTheLoop


def where(*_: object) -> threading.Thread:
    return threading.current_thread()


async def test_small_work_runs_on_the_loops_thread() -> None:
    assert await OffTheLoop().run(LARGE, partial(where, "x")) is threading.current_thread()


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
    result = asyncio.create_task(planning.run(LARGE + 1, partial(work, 21)))
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
            await OffTheLoop().run(size, partial(refuse, size))


def test_a_message_goes_to_the_planning_process_only_when_its_text_is_small() -> None:
    """What a submit hands over to the planning process is pickled and copied both ways:
    a body or inline attachment of megabytes stays with the thread."""
    def message(**fields: Any) -> Submission:
        return Submission(sender="a@example.test", to=["b@example.test"], **fields)

    assert portable(message(text="x" * 1000, html="<p>hi</p>"))
    assert portable(message(text="x" * HAND_OVER))
    assert not portable(message(text="x" * HAND_OVER, html="<p>"))
    assert not portable(message(html="x" * (HAND_OVER + 1)))
    assert not portable(message(attachments=[
        AttachmentIn("a.pdf", content_base64="QUJD" * (HAND_OVER // 4 + 1))]))
    assert portable(message(attachments=[AttachmentIn("a.pdf", upload_id="u1")]))
    assert not portable(message(headers={"X-Big": "x" * (HAND_OVER + 1)}))
