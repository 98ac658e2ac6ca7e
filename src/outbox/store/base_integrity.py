"""What `outbox check` asks of the database (`store.integrity`): the facts behind
`core.integrity`'s faults, and the safe repairs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from outbox.core.integrity import SchemaFacts
from outbox.core.model import Event


class IntegrityStore(Protocol):
    """Impossible states found, and the safe repairs applied."""

    async def final_with_pending(self) -> tuple[str, ...]:
        """Ids of sent, partially sent or failed messages with a pending or deferred
        recipient."""

    async def waiting_blob_uses(self) -> tuple[tuple[str, str, int], ...]:
        """(message id, sha256, size) of each attachment of a message not yet
        finished (queued, deferred, held or sending)."""

    async def events_out_of_order(self) -> tuple[tuple[str, int, datetime, datetime], ...]:
        """(message id, event id, its time, the time of the event before it) of every
        event stamped earlier than the previous event of its message."""

    async def schema_facts(self) -> SchemaFacts:
        """The database's revision and the tables, columns and indexes of this
        Outbox's schema (`store.tables`) that it lacks."""

    async def requeue_final(self, ids: Sequence[str], now: datetime, event: Event) -> int:
        """These final messages with unfinished recipients: queued again, due now,
        with `event`; returns how many changed."""

    async def hold_messages(self, ids: Sequence[str], now: datetime, reason: str,
                            event: Event) -> int:
        """Queued or deferred messages among `ids` held with `reason` and `event`."""

    async def restamp_events(self, messages: Sequence[str]) -> int:
        """Each event of these messages stamped earlier than one before it gets that
        earlier event's time; returns how many changed."""

    async def create_indexes(self, names: Sequence[str]) -> int:
        """Create these indexes of the schema (`store.tables`) that are missing."""
