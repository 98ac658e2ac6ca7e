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
