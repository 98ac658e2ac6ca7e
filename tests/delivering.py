"""An in-process Outbox with its worker delivering, for tests that watch a queue drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from outbox.config import Settings
from outbox.service import Outbox


@asynccontextmanager
async def delivering(settings: Settings) -> AsyncIterator[Outbox]:
    """An Outbox on `settings` with its worker delivering, stopped and closed after."""
    outbox = await Outbox.open(settings)
    worker = outbox.start_delivery()
    task = asyncio.create_task(worker.run())
    try:
        yield outbox
    finally:
        worker.stop()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
    await _nothing_left_running()


async def _nothing_left_running(grace: float = 10.0) -> None:
    """Once delivery has stopped and the Outbox is closed, none of its tasks may be left:
    one that ignores its cancellation hung pytest's teardown for 300 s in CI, with no
    word of which it was. Fail with their stacks instead."""
    others = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    if others:
        _, left = await asyncio.wait(others, timeout=grace)
        if left:
            stacks = "\n".join(f"{t!r}: {t.get_stack(limit=8)}" for t in left)
            raise AssertionError(f"{len(left)} task(s) still running:\n{stacks}")
