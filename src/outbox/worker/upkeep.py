"""The worker's background rounds that need nothing of its claims: each a function of
the store (or blob store) and the clock, run every so often by `Worker`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import structlog

from outbox.blobs import BlobStore
from outbox.store.base import Store

log = structlog.get_logger("outbox.worker")


async def release_left_held(store: Store, relays: Iterable[str],
                            clock: Callable[[], datetime]) -> None:
    """Mail a release cut short left held under a relay that is ok (relay_holds.py)."""
    for relay in relays:
        released = await store.relay_auth.release_left_held(relay, clock())
        if released:
            log.warning("released mail a cut-short release had left held",
                        relay=relay, count=released)


async def refresh_statistics(store: Store) -> None:
    """ANALYZE what outgrew its planner statistics (PostgreSQL; sql/statistics.py)."""
    analysed = await store.retention.refresh_statistics()
    if analysed:
        log.info("refreshed the query planner's statistics", tables=list(analysed))


async def collect_blobs(blobs: BlobStore, clock: Callable[[], datetime]) -> None:
    """Delete attachment content nothing uses any more (every node may run this)."""
    deleted = await blobs.collect(clock())
    if deleted:
        log.info("deleted attachment content no message uses", count=len(deleted))
