"""The SQL of the queue (`SqlMessages`): statements and transaction bodies over
one `Connection`.

Each body runs inside the transaction a backend's runner opened for it and
returns domain values; the dialect differences (the claim statement, the
wake-up, group commit) live in sqlite.py and postgres.py.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    String,
    bindparam,
    func,
    select,
    update,
)

from outbox.core.model import Event, EventType, MessageStatus, RecipientStatus
from outbox.core.suppression import suppression_key
from outbox.errors import Conflict, NotFound
from outbox.store import rows
from outbox.store.rows import AnyRow
from outbox.store.sql import blob_index as blob_sql
from outbox.store.sql import group_insert, message_rows, outcome_rows, webhook_events
from outbox.store.sql.bound_lists import bound_list, in_bound_list, is_postgres
from outbox.store.sql.recipient_rows import insert_recipients
from outbox.store.sql.suppression_check import find_suppressed
from outbox.store.sql.turns import in_turns
from outbox.store.sql.wakeup import Notice
from outbox.store.tables import UtcDateTime, attempts, events, messages, recipients
from outbox.store.values import (
    Attempt,
    AttemptRecord,
    Message,
    MessageDetail,
    NewMessage,
    QueueStats,
    RecipientsSuppressed,
    RecipientUpdate,
)

UNFINISHED = (RecipientStatus.PENDING.value, RecipientStatus.DEFERRED.value)
WAITING = (MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value)
SENDING = MessageStatus.SENDING.value
HELD = MessageStatus.HELD.value

m = messages


# The claim's statements take what changes from one claim to the next as parameters,
# so each is built, keyed and compiled once: building them per claim cost about 2 ms of
# Python per claim on SQLite's one writer (issue 15). `claim_params` gives the values.
_CLAIM_NOW = bindparam("c_now", type_=UtcDateTime())
DUE = m.c.due_at.isnot(None) & (m.c.due_at <= _CLAIM_NOW)  # matches the partial index
CLAIMED = {"status": SENDING, "claimed_by": bindparam("c_owner"),
           "claim_token": bindparam("c_batch", type_=String()) + m.c.id,
           "lease_until": bindparam("c_lease", type_=UtcDateTime()), "due_at": None,
           "updated_at": _CLAIM_NOW}
CLAIM_LIMIT = bindparam("c_limit", type_=Integer())


def claim_params(owner: str, batch: str, now: datetime, lease_until: datetime,
                 limit: int, busy: Collection[str] = ()) -> dict[str, Any]:
    """Each claimed row gets its own token, `<batch>:<id>` (see `claim_token`), so a
    worker can renew, record or give back one claim of a batch on its own. `c_busy`,
    only with `busy` relays: their names, sorted (the backend binds them as a list)."""
    busy_names = {"c_busy": sorted(busy)} if busy else {}
    return {"c_owner": owner, "c_batch": f"{batch}:", "c_now": now, "c_lease": lease_until,
            "c_limit": limit, **busy_names}


def claim_token(batch: str, id: str) -> str:
    return f"{batch}:{id}"


_DUE_COUNT = select(func.count()).select_from(
    select(m.c.id).where(DUE).limit(CLAIM_LIMIT).subquery())


def count_due(conn: Connection, now: datetime, at_most: int) -> int:
    """Due messages, counted on the claim's index up to `at_most`."""
    return int(conn.execute(_DUE_COUNT, {"c_now": now, "c_limit": at_most}).scalar_one())


_UPDATE_ALIKE = {  # by backend: is it PostgreSQL (sql/bound_lists.py)
    postgres: update(recipients)
    .where(recipients.c.message_id == bindparam("b_message"),
           in_bound_list(recipients.c.address, "b_addresses", postgres=postgres))
    .values(status=bindparam("b_status"), reply_code=bindparam("b_reply_code"),
            enhanced_code=bindparam("b_enhanced_code"), reply=bindparam("b_reply"),
            guidance=bindparam("b_guidance"))
    for postgres in (False, True)
}
_ALIKE = 8  # from this many recipients with one outcome, one statement for them all


# -- transaction bodies: one Connection in, domain values out --------------------------------


def insert_message(conn: Connection, message: NewMessage, notice: Notice | None = None
                   ) -> None:
    """`RecipientsSuppressed` instead, for a message that refuses suppressed recipients."""
    refused = suppressed_recipients(conn, [message])
    if refused:
        raise refused[message.id]
    insert_all(conn, [message], notice)


def insert_messages(conn: Connection, batch: Sequence[NewMessage],
                    notice: Notice | None = None) -> list[bool | RecipientsSuppressed]:
    """Insert each message whose idempotency key is free (False for the others) and
    whose recipients pass the suppression list if it asks (`RecipientsSuppressed`
    for the others). Only where no other writer can come between check and insert,
    or on PostgreSQL, where a key taken meanwhile fails the insert (`Conflict`).
    `notice`: NOTIFYd in the commit, on PostgreSQL (sql/group_insert.py)."""
    if (is_postgres(conn) and batch and _keys_differ(batch)
            and group_insert.insert_all(conn, batch, notice, guarded=True)):
        return [True] * len(batch)  # nobody suppressed, no key taken: one statement
    refused = suppressed_recipients(conn, batch)
    taken = _taken_keys(conn, batch)
    created: list[bool | RecipientsSuppressed] = []
    chosen = []
    for message in batch:
        if message.id in refused:
            created.append(refused[message.id])
            continue
        claim = message.idempotency
        key = (claim.owner, claim.key) if claim is not None else None
        is_free = key is None or key not in taken
        if is_free:
            chosen.append(message)
            taken.add(key)
        created.append(is_free)
    insert_all(conn, chosen, notice)
    return created


def _keys_differ(batch: Sequence[NewMessage]) -> bool:
    """No two messages of `batch` carry one idempotency key: where two do, the first
    is inserted and the second finds it taken, which the guarded statement cannot say."""
    keys = [(m.idempotency.owner, m.idempotency.key) for m in batch if m.idempotency]
    return len(keys) == len(set(keys))


def insert_all(conn: Connection, chosen: Sequence[NewMessage], notice: Notice | None = None
               ) -> None:
    """New messages, their recipients, accepted events and blob uses: on PostgreSQL
    one statement (sql/group_insert.py, which NOTIFYs `notice` as it commits), on SQLite
    one multi-row statement per table, whatever the number of messages (group commits,
    batches)."""
    if not chosen:
        return
    if is_postgres(conn):
        group_insert.insert_all(conn, chosen, notice)
        return
    message_rows.insert_messages(conn, chosen)
    insert_recipients(conn, chosen)
    insert_events(conn, [(message.id, rows.accepted_event(message)) for message in chosen])
    for message in chosen:
        blob_sql.insert_uses(conn, message)


def suppressed_recipients(conn: Connection, batch: Sequence[NewMessage]
                          ) -> dict[str, RecipientsSuppressed]:
    """By message id: the messages of `batch` with `refuse_suppressed` and a recipient
    on the list when they were accepted. One query for the whole batch."""
    asking = [message for message in batch if message.refuse_suppressed]
    if not asking:
        return {}
    found = find_suppressed(conn, {r.address for message in asking for r in message.recipients},
                            min(message.accepted_at for message in asking))
    refused = {}
    for message in asking:
        hits = {key: entry for r in message.recipients
                if (entry := found.get(key := suppression_key(r.address))) is not None
                and (entry.expires_at is None or entry.expires_at > message.accepted_at)}
        if hits:
            refused[message.id] = RecipientsSuppressed(hits)
    return refused


def _taken_keys(conn: Connection, batch: Sequence[NewMessage]) -> set[tuple[str, str] | None]:
    claims = [n.idempotency for n in batch if n.idempotency is not None]
    if not claims:
        return set()
    query = taken_keys_query({c.owner for c in claims}, {c.key for c in claims})
    return {(r.owner, r.idempotency_key) for r in conn.execute(query)}


def taken_keys_query(owners: Collection[str], keys: Collection[str]) -> Select[Any]:
    """The messages that hold one of `keys` for one of `owners`. By owner too, so the
    unique index on (owner, idempotency_key) serves it: by key alone it scanned every
    message, at each commit of submits that carry keys (all of SMTP submission's)."""
    return select(m.c.owner, m.c.idempotency_key).where(m.c.owner.in_(sorted(owners)),
                                                       m.c.idempotency_key.in_(sorted(keys)))


def insert_events(conn: Connection, pairs: Sequence[tuple[str, Event]]) -> None:
    """The events, and the webhook deliveries they cause (sql/webhook_events.py)."""
    webhook_events.insert_events(conn, [rows.event_values(id, e) for id, e in in_turns(pairs)])


# The ids as one bound list (sql/bound_lists.py): with a parameter per id, each length
# was a statement of its own, prepared anew on a PostgreSQL connection (a round trip and
# a parse on the server) for most claims and most batches of outcomes.
_RECIPIENTS_OF = {postgres: select(*(recipients.c[name] for name in rows.RECIPIENT_COLUMNS))
                  .where(in_bound_list(recipients.c.message_id, "h_ids", postgres=postgres))
                  .order_by(recipients.c.message_id, recipients.c.position)
                  for postgres in (False, True)}


def hydrate(conn: Connection, found: Sequence[AnyRow]) -> list[Message]:
    """Messages from rows, with all their recipients (in submission order)."""
    if not found:
        return []
    # By mapping: a Row's attribute raises and clears an AttributeError before it finds
    # the column (Python 3.11); a claim hydrates up to CLAIM_LIMIT rows on the writer.
    mapped = [r._mapping for r in found]
    ids = bound_list(conn, [values["id"] for values in mapped])
    grouped = rows.group_recipients(in_turns(conn.execute(_RECIPIENTS_OF[is_postgres(conn)],
                                                          {"h_ids": ids})))
    return [rows.to_message(values, grouped.get(values["id"], ())) for values in mapped]


def _message_by_id(conn: Connection, id: str, *, lock: bool = False) -> AnyRow:
    query = select(m).where(m.c.id == id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no message with id {id}")
    return row


def find_by_idempotency_keys(conn: Connection, owner: str,
                              keys: Sequence[str]) -> dict[str, tuple[Message, str]]:
    if not keys:
        return {}
    found = conn.execute(select(m).where(m.c.owner == owner,
                                         m.c.idempotency_key.in_(list(set(keys))))).all()
    hashes = {row.id: (row.idempotency_key, row.request_hash or "") for row in found}
    return {hashes[message.id][0]: (message, hashes[message.id][1])
            for message in hydrate(conn, found)}


def find_by_message_id(conn: Connection, owner: str, message_id: str) -> Message | None:
    query = (select(m).where(m.c.owner == owner, m.c.message_id == message_id)
             .order_by(m.c.created_at).limit(1))
    found = hydrate(conn, conn.execute(query).all())
    return found[0] if found else None


def record_attempts(conn: Connection, records: Sequence[AttemptRecord]) -> list[bool]:
    if is_postgres(conn) and outcome_rows.fits_one_statement(records):
        return outcome_rows.record_in_one_statement(conn, records)
    held = _claim_tokens(conn, {r.message_id for r in records})
    accepted = _accepted_records(records, held)
    chosen = [r for r, ok in zip(records, accepted, strict=True) if ok]
    if chosen:
        _persist_attempts(conn, chosen)
    return accepted


def _claim_tokens(conn: Connection, ids: set[str]) -> dict[str, str]:
    if is_postgres(conn):
        given = {"r_ids": bound_list(conn, sorted(ids))}
        return {id: token for id, token in conn.execute(_CLAIM_TOKENS, given)}
    # SQLite: straight to the driver, inside the write turn (sqlite_claim.py says why);
    # SQLAlchemy rendering the ids' parameters took most of this statement's time.
    driver = conn.connection.driver_connection
    assert driver is not None
    marks = ", ".join("?" * len(ids))
    return dict(driver.execute(f"SELECT id, claim_token FROM messages WHERE id IN ({marks}) "
                               f"AND status = '{SENDING}' ORDER BY id", sorted(ids)))


# Built once, like the claim's statements (see DUE): the ids are one bound list, as in
# _RECIPIENTS_OF. SQLite keeps a parameter per id: with json_each it searched the
# messages in `sending` by status instead of each id by its key.
_CLAIM_TOKENS = (select(m.c.id, m.c.claim_token)
                 .where(in_bound_list(m.c.id, "r_ids", postgres=True), m.c.status == SENDING)
                 .order_by(m.c.id).with_for_update())


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
    outcome_rows.finish_claims(conn, chosen)
    outcome_rows.insert_attempts(conn, chosen)
    _update_recipients(conn, chosen)
    insert_events(conn, [(r.message_id, e) for r in chosen for e in r.events])


def _update_recipients(conn: Connection, chosen: Sequence[AttemptRecord]) -> None:
    """Recipients of one message that got the same outcome (a relay-wide deferral gives
    all of a big message's the same) change in one statement: one UPDATE per address
    would scan the message's recipients once per address."""
    alike: dict[tuple[Any, ...], list[RecipientUpdate]] = {}
    for record in chosen:
        for u in in_turns(record.recipient_updates):
            key = (record.message_id, u.status, u.reply_code, u.enhanced_code, u.reply,
                   u.guidance)
            alike.setdefault(key, []).append(u)
    single: list[tuple[str, RecipientUpdate]] = []
    for key, updates in alike.items():
        if len(updates) < _ALIKE:
            single.extend((key[0], u) for u in updates)
            continue
        first = rows.recipient_params(key[0], updates[0])
        del first["b_address"]
        conn.execute(_UPDATE_ALIKE[is_postgres(conn)],
                     {**first, "b_addresses": bound_list(conn, [u.address for u in updates])})
    outcome_rows.update_recipients(conn, single)


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


def stats(conn: Connection) -> QueueStats:
    by_status = {status.value: 0 for status in MessageStatus}
    counts = select(m.c.status, func.count()).group_by(m.c.status)
    by_status.update({r[0]: r[1] for r in conn.execute(counts)})
    oldest = conn.execute(select(func.min(m.c.created_at)).where(m.c.status.in_(WAITING)))
    return QueueStats(by_status, oldest.scalar())


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


def retry(conn: Connection, id: str, now: datetime, reroute: Mapping[str, str]) -> Message:
    row = _message_by_id(conn, id, lock=True)
    if not MessageStatus(row.status).can_retry:
        raise Conflict(f"message {id} is {row.status}; only deferred, held, failed or "
                       "partially sent mail can be retried")
    for address, relay in reroute.items():  # where the current routes send them
        conn.execute(update(recipients).where(recipients.c.message_id == id,
                                              recipients.c.address == address)
                     .values(relay=relay))
    relays = conn.execute(select(recipients.c.relay).where(recipients.c.message_id == id))
    conn.execute(update(m).where(m.c.id == id).values(
        status=MessageStatus.QUEUED.value, due_at=now, updated_at=now,
        only_relay=message_rows.only_relay(relays.scalars()), **rows.leave_hold(row, now)))
    conn.execute(update(recipients)
                 .where(recipients.c.message_id == id,
                        recipients.c.status.in_([RecipientStatus.FAILED.value,
                                                 RecipientStatus.DEFERRED.value]))
                 .values(status=RecipientStatus.PENDING.value))
    insert_events(conn, [(id, rows.retry_event(row.status, now))])
    (message,) = hydrate(conn, [_message_by_id(conn, id)])
    return message
