"""`Store` in SQLAlchemy Core, shared by both backends.

`SqliteStore` and `PostgresStore` add only what differs: how a write
transaction starts, the claim statement, and the wake-up. Every foreign
exception is translated once, in `translate_errors`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, bindparam, exists, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox.core.model import Event, EventType, MessageStatus, RecipientStatus
from outbox.errors import Conflict, InputError, NotFound, StorageError
from outbox.store import rows
from outbox.store.base import (
    Attempt,
    AttemptRecord,
    Claim,
    Message,
    MessageDetail,
    NewMessage,
    Page,
    QueueStats,
)
from outbox.store.rows import AnyRow
from outbox.store.tables import UtcDateTime, attempts, events, messages, recipients

MIGRATIONS = Path(__file__).parent / "migrations"
UNFINISHED = (RecipientStatus.PENDING.value, RecipientStatus.DEFERRED.value)
WAITING = (MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value)
SENDING = MessageStatus.SENDING.value
HELD = MessageStatus.HELD.value

m = messages


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


def due_filter(now: datetime) -> Any:
    """Claimable messages: due_at set and passed (matches the partial index)."""
    return m.c.due_at.isnot(None) & (m.c.due_at <= now)


def claim_values(owner: str, token: str, now: datetime, lease_until: datetime) -> dict[str, Any]:
    return {"status": SENDING, "claimed_by": owner, "claim_token": token,
            "lease_until": lease_until, "due_at": None, "updated_at": now}


_FINISH_CLAIM = (
    update(m)
    .where(m.c.id == bindparam("b_id"), m.c.claim_token == bindparam("b_token"),
           m.c.status == SENDING)
    .values(status=bindparam("b_status"), due_at=bindparam("b_due_at", type_=UtcDateTime()),
            attempts=m.c.attempts + bindparam("b_inc"),
            updated_at=bindparam("b_at", type_=UtcDateTime()),
            held_since=bindparam("b_held_since", type_=UtcDateTime()),
            hold_reason=bindparam("b_hold_reason"), held_for_relay=bindparam("b_relay"),
            claimed_by=None, claim_token=None, lease_until=None)
)

_UPDATE_RECIPIENT = (
    update(recipients)
    .where(recipients.c.message_id == bindparam("b_message"),
           recipients.c.address == bindparam("b_address"))
    .values(status=bindparam("b_status"), reply_code=bindparam("b_reply_code"),
            enhanced_code=bindparam("b_enhanced_code"), reply=bindparam("b_reply"),
            guidance=bindparam("b_guidance"))
)

_RELEASE_HELD = (
    update(m)
    .where(m.c.id == bindparam("b_id"), m.c.status == HELD)
    .values(status=MessageStatus.QUEUED.value, due_at=bindparam("b_now", type_=UtcDateTime()),
            updated_at=bindparam("b_now", type_=UtcDateTime()),
            held_seconds=bindparam("b_held_seconds"), held_since=None, hold_reason="",
            held_for_relay=None)
)


class SqlStore:
    """The verbs of `store.base.Store`; subclasses supply `_pick_due`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._wakeup = asyncio.Event()

    # -- transactions and dialect hooks ------------------------------------------------

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with translate_errors(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with translate_errors(), self.engine.begin() as conn:
            yield conn

    async def _pick_due(self, conn: AsyncConnection, values: dict[str, Any], now: datetime,
                        limit: int) -> Sequence[AnyRow]:
        """Claim up to `limit` due rows with `values`; full rows, oldest due first."""
        raise NotImplementedError

    async def _notify(self, conn: AsyncConnection) -> None:
        """Tell other processes, on commit, that a message may be due."""

    async def _lock_schema(self, conn: AsyncConnection) -> None:
        """Serialise concurrent migrations where the write transaction does not."""

    async def _listen(self) -> None:
        """Make sure wake-ups from other processes reach `_wakeup`."""

    # -- lifecycle ---------------------------------------------------------------------

    async def migrate(self) -> None:
        async with self._write() as conn:
            await self._lock_schema(conn)
            await conn.run_sync(_upgrade_to_head)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- submission --------------------------------------------------------------------

    async def enqueue(self, message: NewMessage) -> tuple[Message, bool]:
        try:
            async with self._write() as conn:
                await _insert_message(conn, message)
                if message.status is MessageStatus.QUEUED:
                    await self._notify(conn)
        except Conflict:
            found = await self._find_duplicate(message)
            if found is None:
                raise
            return found, False
        self._wakeup.set()
        return rows.accepted_message(message), True

    async def _find_duplicate(self, message: NewMessage) -> Message | None:
        claim = message.idempotency
        if claim is None:
            return None
        found = await self.find_by_idempotency_key(claim.owner, claim.key)
        return found[0] if found else None

    async def find_by_idempotency_key(self, owner: str, key: str) -> tuple[Message, str] | None:
        query = select(m).where(m.c.owner == owner, m.c.idempotency_key == key)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            (message,) = await _hydrate(conn, [row])
        return message, row.request_hash or ""

    async def find_by_message_id(self, owner: str, message_id: str) -> Message | None:
        query = (select(m).where(m.c.owner == owner, m.c.message_id == message_id)
                 .order_by(m.c.created_at).limit(1))
        async with self._read() as conn:
            found = await _hydrate(conn, (await conn.execute(query)).all())
        return found[0] if found else None

    # -- claims ------------------------------------------------------------------------

    async def claim_due(self, owner: str, now: datetime, lease_until: datetime,
                        limit: int) -> list[Claim]:
        if limit <= 0:
            return []
        token = uuid.uuid4().hex
        values = claim_values(owner, token, now, lease_until)
        async with self._write() as conn:
            picked = await self._pick_due(conn, values, now, limit)
            claimed = await _hydrate(conn, picked)
            await _insert_events(conn, [
                (c.id, Event(now, EventType.CLAIMED, c.attempts + 1, detail=f"claimed by {owner}"))
                for c in claimed])
        lease = lease_until.astimezone(UTC)
        return [Claim(message, owner, token, lease) for message in claimed]

    async def renew_leases(self, owner: str, lease_until: datetime) -> int:
        stmt = (update(m).where(m.c.status == SENDING, m.c.claimed_by == owner)
                .values(lease_until=lease_until))
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount

    async def record_attempts(self, records: Sequence[AttemptRecord]) -> list[bool]:
        if not records:
            return []
        async with self._write() as conn:
            held = await _claim_tokens(conn, {r.message_id for r in records})
            accepted = _accepted_records(records, held)
            chosen = [r for r, ok in zip(records, accepted, strict=True) if ok]
            if chosen:
                await _persist_attempts(conn, chosen)
        return accepted

    async def release_claims(self, owner: str, now: datetime) -> int:
        stmt = (update(m).where(m.c.status == SENDING, m.c.claimed_by == owner)
                .values(status=MessageStatus.QUEUED.value, due_at=now, updated_at=now,
                        claimed_by=None, claim_token=None, lease_until=None))
        async with self._write() as conn:
            count = (await conn.execute(stmt)).rowcount
            if count:
                await self._notify(conn)
        self._wakeup.set()
        return count

    async def release_stale(self, now: datetime, hold: bool) -> list[str]:
        stmt = (update(m).where(m.c.status == SENDING, m.c.lease_until < now)
                .values(_stale_values(now, hold))
                .returning(m.c.id, m.c.attempts))
        async with self._write() as conn:
            stale = (await conn.execute(stmt)).all()
            await _insert_events(conn, [(r.id, rows.uncertain_event(now, r.attempts, hold))
                                        for r in stale])
            if stale and not hold:
                await self._notify(conn)
        if stale and not hold:
            self._wakeup.set()
        return [r.id for r in stale]

    # -- reading -----------------------------------------------------------------------

    async def get(self, id: str) -> MessageDetail:
        query = select(events).where(events.c.message_id == id).order_by(events.c.id)
        async with self._read() as conn:
            message = await _message_by_id(conn, id)
            timeline = tuple(rows.to_event(r) for r in await conn.execute(query))
        return MessageDetail(message, timeline)

    async def attempts(self, id: str) -> list[Attempt]:
        query = select(attempts).where(attempts.c.message_id == id).order_by(attempts.c.id)
        async with self._read() as conn:
            found = [rows.to_attempt(r) for r in await conn.execute(query)]
            if not found:
                await _message_by_id(conn, id)  # NotFound for an unknown id
        return found

    async def next_due_at(self) -> datetime | None:
        query = select(func.min(m.c.due_at)).where(m.c.due_at.isnot(None))
        async with self._read() as conn:
            return (await conn.execute(query)).scalar()

    async def stats(self) -> QueueStats:
        counts = select(m.c.status, func.count()).group_by(m.c.status)
        oldest = select(func.min(m.c.created_at)).where(m.c.status.in_(WAITING))
        async with self._read() as conn:
            by_status = {status.value: 0 for status in MessageStatus}
            by_status.update({r[0]: r[1] for r in await conn.execute(counts)})
            oldest_at = (await conn.execute(oldest)).scalar()
        return QueueStats(by_status, oldest_at)

    async def wait_for_new(self, timeout: float) -> None:
        await self._listen()
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        self._wakeup.clear()

    # -- operator actions --------------------------------------------------------------

    async def cancel(self, id: str, now: datetime) -> Message:
        async with self._write() as conn:
            row = await _locked(conn, id)
            if not MessageStatus(row.status).can_cancel:
                raise Conflict(f"message {id} is {row.status}; only queued, deferred or held "
                               "mail can be cancelled")
            await conn.execute(update(m).where(m.c.id == id).values(
                status=MessageStatus.CANCELLED.value, due_at=None, updated_at=now,
                **rows.leave_hold(row, now)))
            await _insert_events(conn, [(id, Event(now, EventType.CANCELLED))])
            return await _message_by_id(conn, id)

    async def retry(self, id: str, now: datetime) -> Message:
        async with self._write() as conn:
            row = await _locked(conn, id)
            if not MessageStatus(row.status).can_retry:
                raise Conflict(f"message {id} is {row.status}; only deferred, held, failed or "
                               "partially sent mail can be retried")
            await conn.execute(update(m).where(m.c.id == id).values(
                status=MessageStatus.QUEUED.value, due_at=now, updated_at=now,
                **rows.leave_hold(row, now)))
            await conn.execute(
                update(recipients)
                .where(recipients.c.message_id == id,
                       recipients.c.status.in_([RecipientStatus.FAILED.value,
                                                RecipientStatus.DEFERRED.value]))
                .values(status=RecipientStatus.PENDING.value))
            await _insert_events(conn, [(id, rows.retry_event(row.status, now))])
            await self._notify(conn)
            message = await _message_by_id(conn, id)
        self._wakeup.set()
        return message

    async def hold_relay(self, relay: str, now: datetime, reason: str, event: Event) -> int:
        stmt = (update(m).where(m.c.status.in_(WAITING), _has_unfinished_on(relay))
                .values(status=HELD, due_at=None, updated_at=now, held_since=now,
                        hold_reason=reason, held_for_relay=relay)
                .returning(m.c.id))
        async with self._write() as conn:
            held = (await conn.execute(stmt)).scalars().all()
            await _insert_events(conn, [(id, event) for id in held])
        return len(held)

    async def release_relay(self, relay: str, now: datetime) -> int:
        query = (select(m.c.id, m.c.held_since, m.c.held_seconds)
                 .where(m.c.status == HELD, m.c.held_for_relay.isnot(None),
                        _has_unfinished_on(relay))
                 .with_for_update())
        async with self._write() as conn:
            held = (await conn.execute(query)).all()
            if not held:
                return 0
            await conn.execute(_RELEASE_HELD, [rows.release_params(r, now) for r in held])
            released = Event(now, EventType.RELEASED, detail=f"relay {relay} is usable again")
            await _insert_events(conn, [(r.id, released) for r in held])
            await self._notify(conn)
        self._wakeup.set()
        return len(held)

    async def append_event(self, id: str, event: Event) -> None:
        try:
            async with self._write() as conn:
                await _insert_events(conn, [(id, event)])
        except Conflict as exc:  # the foreign key: no such message
            raise NotFound(f"no message with id {id}") from exc

    # `list` last: below it, the name shadows the builtin in annotations.
    async def list(self, status: MessageStatus | None, limit: int,
                   cursor: str | None) -> Page:
        if limit < 1:
            raise InputError("limit must be at least 1", field="limit")
        query = select(m).order_by(m.c.created_at.desc(), m.c.id.desc()).limit(limit + 1)
        if status is not None:
            query = query.where(m.c.status == status.value)
        if cursor:
            query = query.where(tuple_(m.c.created_at, m.c.id) < _decode_cursor(cursor))
        async with self._read() as conn:
            found = (await conn.execute(query)).all()
            page = await _hydrate(conn, found[:limit])
        more = len(found) > limit
        return Page(tuple(page), _encode_cursor(page[-1]) if more else None)


# -- statements used by several verbs ------------------------------------------------------


def _upgrade_to_head(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _stale_values(now: datetime, hold: bool) -> dict[str, Any]:
    """A lapsed lease: the attempt counts (a message that kills its worker must
    not loop forever) and the message waits again, or is held."""
    return {"status": HELD if hold else MessageStatus.DEFERRED.value,
            "due_at": None if hold else now, "held_since": now if hold else None,
            "hold_reason": rows.UNCERTAIN_HOLD if hold else "", "attempts": m.c.attempts + 1,
            "updated_at": now, "claimed_by": None, "claim_token": None, "lease_until": None}


def _has_unfinished_on(relay: str) -> Any:
    return exists().where(recipients.c.message_id == m.c.id, recipients.c.relay == relay,
                          recipients.c.status.in_(UNFINISHED))


async def _insert_message(conn: AsyncConnection, message: NewMessage) -> None:
    await conn.execute(insert(m).values(rows.message_values(message)))
    recipient_rows = rows.recipient_values(message)
    if recipient_rows:
        await conn.execute(insert(recipients), recipient_rows)
    await _insert_events(conn, [(message.id, rows.accepted_event(message))])


async def _insert_events(conn: AsyncConnection, pairs: Sequence[tuple[str, Event]]) -> None:
    if pairs:
        await conn.execute(insert(events), [rows.event_values(id, e) for id, e in pairs])


async def _locked(conn: AsyncConnection, id: str) -> AnyRow:
    row = (await conn.execute(select(m).where(m.c.id == id).with_for_update())).first()
    if row is None:
        raise NotFound(f"no message with id {id}")
    return row


async def _message_by_id(conn: AsyncConnection, id: str) -> Message:
    row = (await conn.execute(select(m).where(m.c.id == id))).first()
    if row is None:
        raise NotFound(f"no message with id {id}")
    (message,) = await _hydrate(conn, [row])
    return message


async def _hydrate(conn: AsyncConnection, found: Sequence[AnyRow]) -> list[Message]:
    """Messages from rows, with their recipients (in submission order)."""
    if not found:
        return []
    query = (select(recipients).where(recipients.c.message_id.in_([r.id for r in found]))
             .order_by(recipients.c.message_id, recipients.c.position))
    grouped = rows.group_recipients(await conn.execute(query))
    return [rows.to_message(r, grouped.get(r.id, ())) for r in found]


async def _claim_tokens(conn: AsyncConnection, ids: set[str]) -> dict[str, str]:
    query = (select(m.c.id, m.c.claim_token).where(m.c.id.in_(sorted(ids)), m.c.status == SENDING)
             .order_by(m.c.id).with_for_update())
    return {r.id: r.claim_token for r in await conn.execute(query)}


def _accepted_records(records: Sequence[AttemptRecord], held: dict[str, str]) -> list[bool]:
    """A record holds its claim if its token matches; a claim ends with its first record."""
    accepted = []
    for record in records:
        ok = held.get(record.message_id) == record.token
        if ok:
            del held[record.message_id]
        accepted.append(ok)
    return accepted


async def _persist_attempts(conn: AsyncConnection, chosen: Sequence[AttemptRecord]) -> None:
    await conn.execute(_FINISH_CLAIM, [rows.finish_params(r) for r in chosen])
    await conn.execute(insert(attempts), [rows.attempt_values(r) for r in chosen])
    updates = [rows.recipient_params(r.message_id, u) for r in chosen
               for u in r.recipient_updates]
    if updates:
        await conn.execute(_UPDATE_RECIPIENT, updates)
    await _insert_events(conn, [(r.message_id, e) for r in chosen for e in r.events])


def _encode_cursor(message: Message) -> str:
    raw = json.dumps([message.created_at.isoformat(), message.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, id = json.loads(raw)
        created_at = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InputError("the cursor is not valid; use next_cursor from a previous page",
                         field="cursor") from exc
    if created_at.tzinfo is None or not isinstance(id, str):
        raise InputError("the cursor is not valid; use next_cursor from a previous page",
                         field="cursor")
    return tuple_(bindparam("c_at", created_at, type_=UtcDateTime()), bindparam("c_id", id))
