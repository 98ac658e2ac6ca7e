"""Whole-database verbs for backup and restore (`store.archive`): a consistent
snapshot of every Outbox table as portable rows, and loading such rows into an
empty (or emptied) database at the backup's schema revision, then upgrading it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from outbox.core.recovery import AbandonedClaim, RecoveryVerdict

# A table's rows as JSON-ready dicts (datetimes as ISO text, bytes as base64).
PortableRow = dict[str, Any]
# Writes one table's rows somewhere; returns how many it wrote.
TableSink = Callable[[str, Iterator[PortableRow]], int]
# Each table of a backup: a callable giving its rows again.
TableSource = Mapping[str, Callable[[], Iterator[PortableRow]]]
Decide = Callable[[AbandonedClaim], RecoveryVerdict]


@dataclass(frozen=True, slots=True)
class Dumped:
    backend: str
    revision: str
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class Loaded:
    counts: dict[str, int]
    requeued: tuple[str, ...]  # in flight at backup time: queued again, uncertain


class ArchiveStore(Protocol):
    """The database as a whole, for `outbox backup` and `outbox restore`."""

    async def table_counts(self) -> dict[str, int]:
        """Rows per Outbox table (those that exist)."""

    async def dump_tables(self, sink: TableSink, skip: frozenset[str] = frozenset()
                          ) -> Dumped:
        """Every Outbox table but `skip`, read in one consistent snapshot taken while
        other processes keep writing (SQLite: the online backup API into a temporary
        copy; PostgreSQL: one REPEATABLE READ, READ ONLY transaction), table by table
        in dependency order, passed to `sink`."""

    async def load_tables(self, source: TableSource, revision: str, now: datetime,
                          decide: Decide, *, force: bool) -> Loaded:
        """In one transaction: refuse (`errors.Conflict`) if the database holds
        messages and not `force`; drop Outbox's tables; create the schema at
        `revision`; insert the rows; upgrade to the head; and give every message
        that was `sending` the verdict `decide` gives it (core.recovery)."""
