"""Retention (`store.retention`): history and idempotency keys past their time,
deleted in small batches, the space they held given back, and the planner's
statistics kept in step with the tables' growth."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class RetentionStore(Protocol):
    """Each verb is one short transaction touching at most `limit` rows."""

    async def purge_idempotency_keys(self, accepted_before: datetime, limit: int) -> int:
        """Forget the idempotency keys (and request hashes) of up to `limit` messages
        accepted before `accepted_before`; returns how many."""

    async def purge_finished(self, finished_before: datetime, limit: int) -> int:
        """Delete up to `limit` sent, partially sent, failed or cancelled messages last
        changed before `finished_before`, with their recipients, attempts
        (transcripts), events and blob uses; returns how many messages."""

    async def purge_cleared_alerts(self, cleared_before: datetime, limit: int) -> int:
        """Delete up to `limit` alerts cleared before `cleared_before`."""

    async def reclaim_space(self, max_pages: int) -> int:
        """Give free pages back to the file system (SQLite with incremental
        auto_vacuum: up to `max_pages`); the pages freed. 0 where the database does
        it itself (PostgreSQL's autovacuum) or cannot (SQLite without auto_vacuum)."""

    async def refresh_statistics(self) -> tuple[str, ...]:
        """Gather the query planner's statistics anew (ANALYZE) for each table that has
        changed by as many rows as it held when they were last gathered (and by at least
        1,000), skipping one locked by another session; the tables it asked ANALYZE for.
        PostgreSQL only (sql/statistics.py); () elsewhere."""
