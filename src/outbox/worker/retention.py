"""The retention loop: history past `[storage] keep_history` and idempotency keys
past `[auth] idempotency_ttl` are deleted a small batch at a time
(`[storage] purge_batch` rows, one short transaction each), so delivery's own
writes go in between and never wait behind a purge; then SQLite's free pages are
given back (incremental vacuum). Every node may run it: the deletes are idempotent.
Supervised by the worker like its other loops (a failure is logged, counted,
backed off; delivery carries on)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from outbox.config import Settings
from outbox.core.retention import BREATH, Retention
from outbox.store.base import RetentionStore

log = structlog.get_logger("outbox.retention")

VACUUM_PAGES = 2000  # pages given back per round (8 MB at 4 KiB pages)


def retention_policy(settings: Settings) -> Retention:
    storage = settings.storage
    return Retention(storage.keep_history, settings.auth.idempotency_ttl,
                     storage.purge_batch, storage.purge_every)


class Purger:
    def __init__(self, store: RetentionStore, policy: Retention,
                 clock: Callable[[], datetime]) -> None:
        self._store = store
        self.policy = policy
        self._clock = clock
        self.purged = {"idempotency_keys": 0, "messages": 0, "alerts": 0}

    async def round(self) -> float:
        """One batch of each kind; returns the seconds until the next round."""
        now = self._clock()
        policy = self.policy
        keys = await self._store.purge_idempotency_keys(policy.keys_before(now), policy.batch)
        messages = alerts = 0
        before = policy.history_before(now)
        if before is not None:
            messages = await self._store.purge_finished(before, policy.batch)
            alerts = await self._store.purge_cleared_alerts(before, policy.batch)
        self._count(keys, messages, alerts)
        pause = policy.pause_after((keys, messages, alerts))
        if pause > BREATH:  # caught up: give the space back, a slice at a time
            freed = await self._store.reclaim_space(VACUUM_PAGES)
            if freed >= VACUUM_PAGES:
                return BREATH
        return pause

    def _count(self, keys: int, messages: int, alerts: int) -> None:
        if not (keys or messages or alerts):
            return
        self.purged["idempotency_keys"] += keys
        self.purged["messages"] += messages
        self.purged["alerts"] += alerts
        log.debug("purged history", idempotency_keys=keys, messages=messages, alerts=alerts)
