"""`SqlStore`: the verbs of `store.base.Store`, each one transaction.

A verb runs its body (sql/queries.py) through the backend's runner:
PostgreSQL drives it on asyncpg (`run_sync`), SQLite hands the whole
transaction to a thread in one hop. Every foreign exception is translated
once, in `translate_errors`.
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from outbox.core.model import Event, EventType, MessageStatus
from outbox.errors import Conflict, InputError, NotFound, StorageError
from outbox.store import rows
from outbox.store.base import (
    Alert,
    Attempt,
    AttemptRecord,
    Claim,
    DatabaseInfo,
    Message,
    MessageDetail,
    NewMessage,
    Page,
    QueueStats,
)
from outbox.store.rows import AnyRow
from outbox.store.sql import operations as ops
from outbox.store.sql import queries as q
from outbox.store.sql.address_book import AddressBookVerbs
from outbox.store.sql.blobs import BlobVerbs
from outbox.store.sql.relay_auth import RelayAuthVerbs

P = ParamSpec("P")
T = TypeVar("T")
Body = Callable[Concatenate[Connection, P], T]

MIGRATIONS = Path(__file__).parent.parent / "migrations"


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """SQLAlchemy and driver errors become `StorageError` (constraint
    violations `Conflict`); Outbox's own errors pass through."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(f"the database refused the change: {_reason(exc)}") from exc
    except (SQLAlchemyError, OSError) as exc:
        raise StorageError(f"database error: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0]}" if text else type(orig).__name__


class SqlStore(AddressBookVerbs, RelayAuthVerbs, BlobVerbs, ABC):
    """The verbs of `store.base.Store`. A subclass supplies the runners
    (`_read`, `_write`: one transaction each), `_pick_due` and the wake-up."""

    def __init__(self) -> None:
        self._wakeup = asyncio.Event()

    # -- what a backend supplies -------------------------------------------------------

    @abstractmethod
    async def _read(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`body(conn, ...)` in a read transaction."""
        ...

    @abstractmethod
    async def _write(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`body(conn, ...)` in a write transaction, committed durably on return."""
        ...

    @abstractmethod
    def _pick_due(self, conn: Connection, values: dict[str, Any], now: datetime,
                  limit: int) -> Sequence[AnyRow]:
        """Claim up to `limit` due rows with `values`; full rows, oldest due first."""
        ...

    def _announce(self) -> None:
        """A message may have become due: wake this process's waiters (and,
        where the backend can, other processes')."""
        self._wakeup.set()

    def _lock_schema(self, conn: Connection) -> None:
        """Serialise concurrent migrations where the write transaction does not."""

    async def _listen(self) -> None:
        """Make sure wake-ups from other processes reach `_wakeup`."""

    async def ping(self) -> None:
        """Raise `StorageError` unless the database answers."""
        await self._read(q.ping)

    # -- lifecycle ---------------------------------------------------------------------

    async def migrate(self) -> None:
        await self._write(self._migrate)

    def _migrate(self, conn: Connection) -> None:
        # Imported here: Alembic is only needed when migrating, and the CLI starts faster.
        from alembic import command
        from alembic.config import Config

        self._lock_schema(conn)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")

    @abstractmethod
    async def close(self) -> None:
        ...

    # -- submission --------------------------------------------------------------------

    async def enqueue(self, message: NewMessage) -> tuple[Message, bool]:
        rows.check_new(message)
        if not await self._insert(message):
            found = await self._find_duplicate(message)
            if found is None:  # the key was free, so it was the id
                raise Conflict(f"a message with id {message.id} already exists")
            return found, False
        if message.status is MessageStatus.QUEUED:
            self._announce()
        return rows.accepted_message(message), True

    async def _insert(self, message: NewMessage) -> bool:
        """Insert and commit; False if its idempotency key is already taken."""
        try:
            await self._write(q.insert_message, message)
        except Conflict:
            if message.idempotency is None:
                raise
            return False
        return True

    async def _find_duplicate(self, message: NewMessage) -> Message | None:
        claim = message.idempotency
        if claim is None:
            return None
        found = await self.find_by_idempotency_key(claim.owner, claim.key)
        return found[0] if found else None

    async def find_by_idempotency_key(self, owner: str, key: str) -> tuple[Message, str] | None:
        return await self._read(q.find_by_idempotency_key, owner, key)

    async def find_by_message_id(self, owner: str, message_id: str) -> Message | None:
        return await self._read(q.find_by_message_id, owner, message_id)

    # -- claims ------------------------------------------------------------------------

    async def claim_due(self, owner: str, now: datetime, lease_until: datetime,
                        limit: int) -> list[Claim]:
        if limit <= 0:
            return []
        token = uuid.uuid4().hex
        claimed = await self._write(self._claim, q.claim_values(owner, token, now, lease_until),
                                    now, limit)
        lease = lease_until.astimezone(UTC)
        return [Claim(message, owner, token, lease) for message in claimed]

    def _claim(self, conn: Connection, values: dict[str, Any], now: datetime,
               limit: int) -> list[Message]:
        claimed = q.hydrate(conn, self._pick_due(conn, values, now, limit))
        owner = values["claimed_by"]
        q.insert_events(conn, [(c.id, Event(now, EventType.CLAIMED, c.attempts + 1,
                                           detail=f"claimed by {owner}")) for c in claimed])
        return claimed

    async def renew_leases(self, owner: str, lease_until: datetime) -> int:
        return await self._write(q.renew_leases, owner, lease_until)

    async def record_attempts(self, records: Sequence[AttemptRecord]) -> list[bool]:
        if not records:
            return []
        return await self._write(q.record_attempts, records)

    async def release_claims(self, owner: str, now: datetime) -> int:
        count = await self._write(q.release_claims, owner, now)
        if count:
            self._announce()
        return count

    async def release_stale(self, now: datetime, hold: bool) -> list[str]:
        released = await self._write(q.release_stale, now, hold)
        if released and not hold:
            self._announce()
        return released

    # -- reading -----------------------------------------------------------------------

    async def get(self, id: str) -> MessageDetail:
        return await self._read(q.get_detail, id)

    async def attempts(self, id: str) -> list[Attempt]:
        return await self._read(q.list_attempts, id)

    async def next_due_at(self) -> datetime | None:
        return await self._read(q.next_due_at)

    async def stats(self) -> QueueStats:
        return await self._read(q.stats)

    async def wait_for_new(self, timeout: float) -> None:
        await self._listen()
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        self._wakeup.clear()

    # -- operator actions --------------------------------------------------------------

    async def cancel(self, id: str, now: datetime) -> Message:
        return await self._write(q.cancel, id, now)

    async def retry(self, id: str, now: datetime) -> Message:
        message = await self._write(q.retry, id, now)
        self._announce()
        return message

    async def hold_relay(self, relay: str, now: datetime, reason: str, event: Event) -> int:
        return await self._write(q.hold_relay, relay, now, reason, event)

    async def release_relay(self, relay: str, now: datetime) -> int:
        count = await self._write(q.release_relay, relay, now)
        if count:
            self._announce()
        return count

    async def append_event(self, id: str, event: Event) -> None:
        try:
            await self._write(q.insert_events, [(id, event)])
        except Conflict as exc:  # the foreign key: no such message
            raise NotFound(f"no message with id {id}") from exc

    # -- operations: alerts and diagnostics --------------------------------------------

    async def raise_alert(self, key: str, severity: str, title: str, detail: str,
                          guidance: str, now: datetime) -> bool:
        alert = Alert(key, severity, title, detail, guidance, raised_at=now)
        try:
            return await self._write(ops.raise_alert, alert)
        except Conflict:  # another node raised it between our check and insert
            return False

    async def clear_alert(self, key: str, now: datetime) -> bool:
        return await self._write(ops.clear_alert, key, now)

    async def list_alerts(self, active_only: bool, limit: int = 100) -> tuple[Alert, ...]:
        return await self._read(ops.list_alerts, active_only, limit)

    async def relay_outcomes(self, since: datetime) -> dict[str, dict[str, int]]:
        return await self._read(ops.relay_outcomes, since)

    async def describe_database(self) -> DatabaseInfo:
        return await self._read(ops.describe_database)

    # `list` last: below it, the name shadows the builtin in annotations.
    async def list(self, status: MessageStatus | None, limit: int,
                   cursor: str | None) -> Page:
        if limit < 1:
            raise InputError("limit must be at least 1", field="limit")
        after = q.decode_cursor(cursor) if cursor else None
        return await self._read(q.page, status, limit, after)


