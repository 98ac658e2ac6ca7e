"""Group commit of attempt results.

Deliveries finish one by one; writing each result in its own transaction
would make the database, not SMTP, the bottleneck. Results queue here and are
written together: while one transaction commits, the next batch gathers.
Each caller still waits for its own commit, so nothing is acknowledged early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from outbox.store.base import AttemptRecord, MessageStore

MAX_BATCH = 500


class Recorder:
    def __init__(self, store: MessageStore) -> None:
        self._store = store
        self._pending: list[tuple[AttemptRecord, asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()

    async def record(self, record: AttemptRecord) -> bool:
        """Persist one result; True unless the claim was lost meanwhile."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        """Write batches until cancelled; a cancelled run first drains what waits."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._flush()
        finally:
            await asyncio.shield(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            await self._write(batch)

    async def _write(self, batch: Sequence[tuple[AttemptRecord, asyncio.Future[bool]]]) -> None:
        try:
            results = await self._store.record_attempts([record for record, _ in batch])
        except Exception as exc:  # every waiter must hear of the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), accepted in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(accepted)
