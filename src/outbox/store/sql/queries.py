"""The SQL of every verb: statements and transaction bodies over one `Connection`.

Each body runs inside the transaction a backend's runner opened for it and
returns domain values; the dialect differences (the claim statement, the
wake-up) live in sqlite.py and postgres.py.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, exists, func, insert, select, tuple_, update

from outbox.core.model import Event, EventType, MessageStatus, RecipientStatus
from outbox.errors import Conflict, InputError, NotFound
from outbox.store import rows
from outbox.store.base import (
    Attempt,
    AttemptRecord,
    Message,
    MessageDetail,
    NewMessage,
    Page,
    QueueStats,
)
from outbox.store.rows import AnyRow
from outbox.store.sql import blobs as blob_sql
from outbox.store.tables import UtcDateTime, attempts, events, messages, recipients

UNFINISHED = (RecipientStatus.PENDING.value, RecipientStatus.DEFERRED.value)
WAITING = (MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value)
SENDING = MessageStatus.SENDING.value
HELD = MessageStatus.HELD.value

m = messages


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



# -- transaction bodies: one Connection in, domain values out --------------------------------


def ping(conn: Connection) -> None:
    conn.execute(select(1))


def insert_message(conn: Connection, message: NewMessage) -> None:
    conn.execute(insert(m).values(rows.message_values(message)))
    recipient_rows = rows.recipient_values(message)
    if recipient_rows:
        conn.execute(insert(recipients), recipient_rows)
    insert_events(conn, [(message.id, rows.accepted_event(message))])
    blob_sql.insert_uses(conn, message)


def insert_messages(conn: Connection, batch: Sequence[NewMessage]) -> list[bool]:
    """Insert each message whose idempotency key is free (False for the others).
    Only where no other writer can come between the check and the insert."""
    taken = _taken_keys(conn, batch)
    created = []
    for message in batch:
        claim = message.idempotency
        key = (claim.owner, claim.key) if claim is not None else None
        is_free = key is None or key not in taken
        if is_free:
            insert_message(conn, message)
            taken.add(key)
        created.append(is_free)
    return created


def _taken_keys(conn: Connection, batch: Sequence[NewMessage]) -> set[tuple[str, str] | None]:
    keys = [n.idempotency.key for n in batch if n.idempotency is not None]
    if not keys:
        return set()
    query = select(m.c.owner, m.c.idempotency_key).where(m.c.idempotency_key.in_(keys))
    return {(r.owner, r.idempotency_key) for r in conn.execute(query)}


def insert_events(conn: Connection, pairs: Sequence[tuple[str, Event]]) -> None:
    if pairs:
        conn.execute(insert(events), [rows.event_values(id, e) for id, e in pairs])


def hydrate(conn: Connection, found: Sequence[AnyRow]) -> list[Message]:
    """Messages from rows, with all their recipients (in submission order)."""
    if not found:
        return []
    query = (select(recipients).where(recipients.c.message_id.in_([r.id for r in found]))
             .order_by(recipients.c.message_id, recipients.c.position))
    grouped = rows.group_recipients(conn.execute(query))
    return [rows.to_message(r, grouped.get(r.id, ())) for r in found]


def _message_by_id(conn: Connection, id: str, *, lock: bool = False) -> AnyRow:
    query = select(m).where(m.c.id == id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no message with id {id}")
    return row


def find_by_idempotency_key(conn: Connection, owner: str,
                             key: str) -> tuple[Message, str] | None:
    row = conn.execute(select(m).where(m.c.owner == owner, m.c.idempotency_key == key)).first()
    if row is None:
        return None
    (message,) = hydrate(conn, [row])
    return message, row.request_hash or ""


def find_by_message_id(conn: Connection, owner: str, message_id: str) -> Message | None:
    query = (select(m).where(m.c.owner == owner, m.c.message_id == message_id)
             .order_by(m.c.created_at).limit(1))
    found = hydrate(conn, conn.execute(query).all())
    return found[0] if found else None


def renew_leases(conn: Connection, owner: str, lease_until: datetime) -> int:
    stmt = (update(m).where(m.c.status == SENDING, m.c.claimed_by == owner)
            .values(lease_until=lease_until))
    return conn.execute(stmt).rowcount


def release_claims(conn: Connection, owner: str, now: datetime) -> int:
    stmt = (update(m).where(m.c.status == SENDING, m.c.claimed_by == owner)
            .values(status=MessageStatus.QUEUED.value, due_at=now, updated_at=now,
                    claimed_by=None, claim_token=None, lease_until=None))
    return conn.execute(stmt).rowcount


def release_stale(conn: Connection, now: datetime, hold: bool) -> list[str]:
    stmt = (update(m).where(m.c.status == SENDING, m.c.lease_until < now)
            .values(_stale_values(now, hold)).returning(m.c.id, m.c.attempts))
    stale = conn.execute(stmt).all()
    insert_events(conn, [(r.id, rows.uncertain_event(now, r.attempts, hold)) for r in stale])
    return [r.id for r in stale]


def record_attempts(conn: Connection, records: Sequence[AttemptRecord]) -> list[bool]:
    held = _claim_tokens(conn, {r.message_id for r in records})
    accepted = _accepted_records(records, held)
    chosen = [r for r, ok in zip(records, accepted, strict=True) if ok]
    if chosen:
        _persist_attempts(conn, chosen)
    return accepted


def _claim_tokens(conn: Connection, ids: set[str]) -> dict[str, str]:
    query = (select(m.c.id, m.c.claim_token).where(m.c.id.in_(sorted(ids)), m.c.status == SENDING)
             .order_by(m.c.id).with_for_update())
    return {r.id: r.claim_token for r in conn.execute(query)}


def _accepted_records(records: Sequence[AttemptRecord], held: dict[str, str]) -> list[bool]:
    """A record holds its claim if its token matches; a claim ends with its first record."""
    accepted = []
    for record in records:
        ok = held.get(record.message_id) == record.token
        if ok:
            del held[record.message_id]
        accepted.append(ok)
    return accepted


def _persist_attempts(conn: Connection, chosen: Sequence[AttemptRecord]) -> None:
    conn.execute(_FINISH_CLAIM, [rows.finish_params(r) for r in chosen])
    conn.execute(insert(attempts), [rows.attempt_values(r) for r in chosen])
    updates = [rows.recipient_params(r.message_id, u) for r in chosen
               for u in r.recipient_updates]
    if updates:
        conn.execute(_UPDATE_RECIPIENT, updates)
    insert_events(conn, [(r.message_id, e) for r in chosen for e in r.events])


def _stale_values(now: datetime, hold: bool) -> dict[str, Any]:
    """A lapsed lease: the attempt counts (a message that kills its worker must
    not loop forever) and the message waits again, or is held."""
    return {"status": HELD if hold else MessageStatus.DEFERRED.value,
            "due_at": None if hold else now, "held_since": now if hold else None,
            "hold_reason": rows.UNCERTAIN_HOLD if hold else "", "attempts": m.c.attempts + 1,
            "updated_at": now, "claimed_by": None, "claim_token": None, "lease_until": None}


def get_detail(conn: Connection, id: str) -> MessageDetail:
    (message,) = hydrate(conn, [_message_by_id(conn, id)])
    query = select(events).where(events.c.message_id == id).order_by(events.c.id)
    return MessageDetail(message, tuple(rows.to_event(r) for r in conn.execute(query)))


def list_attempts(conn: Connection, id: str) -> list[Attempt]:
    query = select(attempts).where(attempts.c.message_id == id).order_by(attempts.c.id)
    found = [rows.to_attempt(r) for r in conn.execute(query)]
    if not found:
        _message_by_id(conn, id)  # NotFound for an unknown id
    return found


def next_due_at(conn: Connection) -> datetime | None:
    return conn.execute(select(func.min(m.c.due_at)).where(m.c.due_at.isnot(None))).scalar()


def stats(conn: Connection) -> QueueStats:
    by_status = {status.value: 0 for status in MessageStatus}
    counts = select(m.c.status, func.count()).group_by(m.c.status)
    by_status.update({r[0]: r[1] for r in conn.execute(counts)})
    oldest = conn.execute(select(func.min(m.c.created_at)).where(m.c.status.in_(WAITING)))
    return QueueStats(by_status, oldest.scalar())


def page(conn: Connection, status: MessageStatus | None, limit: int,
          after: tuple[datetime, str] | None) -> Page:
    query = select(m).order_by(m.c.created_at.desc(), m.c.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(m.c.status == status.value)
    if after is not None:
        at = bindparam("after_at", after[0], type_=UtcDateTime())
        query = query.where(tuple_(m.c.created_at, m.c.id) < tuple_(at, after[1]))
    found = conn.execute(query).all()
    page = hydrate(conn, found[:limit])
    return Page(tuple(page), _encode_cursor(page[-1]) if len(found) > limit else None)


def cancel(conn: Connection, id: str, now: datetime) -> Message:
    row = _message_by_id(conn, id, lock=True)
    if not MessageStatus(row.status).can_cancel:
        raise Conflict(f"message {id} is {row.status}; only queued, deferred or held mail "
                       "can be cancelled")
    conn.execute(update(m).where(m.c.id == id).values(
        status=MessageStatus.CANCELLED.value, due_at=None, updated_at=now,
        **rows.leave_hold(row, now)))
    insert_events(conn, [(id, Event(now, EventType.CANCELLED))])
    (message,) = hydrate(conn, [_message_by_id(conn, id)])
    return message


def retry(conn: Connection, id: str, now: datetime) -> Message:
    row = _message_by_id(conn, id, lock=True)
    if not MessageStatus(row.status).can_retry:
        raise Conflict(f"message {id} is {row.status}; only deferred, held, failed or "
                       "partially sent mail can be retried")
    conn.execute(update(m).where(m.c.id == id).values(
        status=MessageStatus.QUEUED.value, due_at=now, updated_at=now,
        **rows.leave_hold(row, now)))
    conn.execute(update(recipients)
                 .where(recipients.c.message_id == id,
                        recipients.c.status.in_([RecipientStatus.FAILED.value,
                                                 RecipientStatus.DEFERRED.value]))
                 .values(status=RecipientStatus.PENDING.value))
    insert_events(conn, [(id, rows.retry_event(row.status, now))])
    (message,) = hydrate(conn, [_message_by_id(conn, id)])
    return message


def _has_unfinished_on(relay: str) -> Any:
    return exists().where(recipients.c.message_id == m.c.id, recipients.c.relay == relay,
                          recipients.c.status.in_(UNFINISHED))


def hold_relay(conn: Connection, relay: str, now: datetime, reason: str, event: Event) -> int:
    stmt = (update(m).where(m.c.status.in_(WAITING), _has_unfinished_on(relay))
            .values(status=HELD, due_at=None, updated_at=now, held_since=now,
                    hold_reason=reason, held_for_relay=relay)
            .returning(m.c.id))
    held = conn.execute(stmt).scalars().all()
    insert_events(conn, [(id, event) for id in held])
    return len(held)


def release_relay(conn: Connection, relay: str, now: datetime) -> int:
    """Held mail of `relay` (held for the relay's sake, not by policy) back to the queue."""
    query = (select(m.c.id, m.c.held_since, m.c.held_seconds)
             .where(m.c.status == HELD, m.c.held_for_relay.isnot(None),
                    _has_unfinished_on(relay))
             .with_for_update())
    held = conn.execute(query).all()
    if held:
        conn.execute(_RELEASE_HELD, [rows.release_params(r, now) for r in held])
        released = Event(now, EventType.RELEASED, detail=f"relay {relay} is usable again")
        insert_events(conn, [(r.id, released) for r in held])
    return len(held)


def _encode_cursor(message: Message) -> str:
    raw = json.dumps([message.created_at.isoformat(), message.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    invalid = InputError("the cursor is not valid; use next_cursor from a previous page",
                         field="cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, id = json.loads(raw)
        created_at = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise invalid from exc
    if created_at.tzinfo is None or not isinstance(id, str):
        raise invalid
    return created_at, id
