"""The SQL of the address book's contacts: rows in and out, changes applied in one
transaction, usage counters, autocomplete, and directory sync state.

Contacts are written in batches (executemany, RETURNING ids in parameter
order), so an import or a directory sync of tens of thousands of entries is a
handful of statements. Autocomplete is a range scan of the covering index on
`contact_terms (term, rank, ...)`; each use of an address updates its rank
there too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from outbox.core.contacts import (
    NEVER_USED,
    Contact,
    ContactChanges,
    NewContact,
    Source,
    Suggestion,
    SyncState,
    add_use,
    address_key,
    name_key,
    prefix_range,
    search_terms,
    use_weight,
)
from outbox.errors import NotFound
from outbox.store.sql.bound_lists import bound_list, in_bound_list, is_postgres
from outbox.store.sql.usage_rows import add_usage, write_usage
from outbox.store.tables import (
    address_usage,
    contact_emails,
    contact_terms,
    contacts,
    group_members,
    sync_state,
)

CHUNK = 500  # ids per IN (...) list, well under every backend's parameter limit
X = TypeVar("X")


def chunks(items: Sequence[X], size: int = CHUNK) -> Iterator[Sequence[X]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- reading --------------------------------------------------------------------------------


def get_contacts(conn: Connection, ids: Sequence[int]) -> list[Contact]:
    """The contacts with these ids, in id order (missing ids are left out)."""
    rows: list[Any] = []
    emails: dict[int, list[str]] = {}
    for part in chunks(sorted(set(ids))):
        rows += conn.execute(select(contacts).where(contacts.c.id.in_(part))).all()
        query = (select(contact_emails.c.contact_id, contact_emails.c.address)
                 .where(contact_emails.c.contact_id.in_(part))
                 .order_by(contact_emails.c.contact_id, contact_emails.c.position))
        for contact_id, address in conn.execute(query):
            emails.setdefault(contact_id, []).append(address)
    return [_contact(row, emails.get(row.id, [])) for row in sorted(rows, key=lambda r: r.id)]


def _contact(row: Any, emails: list[str]) -> Contact:
    return Contact(id=row.id, name=row.name, emails=tuple(emails), tags=tuple(row.tags or ()),
                   source=Source(row.source), external_id=row.external_id,
                   updated_at=row.updated_at)


def get_contact(conn: Connection, id: int) -> Contact:
    found = get_contacts(conn, [id])
    if not found:
        raise NotFound(f"no contact with id {id}")
    return found[0]


def list_contacts(conn: Connection, limit: int | None, after: int,
                  source: Source | None) -> list[Contact]:
    query = select(contacts.c.id).where(contacts.c.id > after).order_by(contacts.c.id)
    if source is not None:
        query = query.where(contacts.c.source == source.value)
    if limit is not None:
        query = query.limit(limit)
    return get_contacts(conn, list(conn.execute(query).scalars()))


def find_contacts(conn: Connection, keys: Collection[str]) -> list[Contact]:
    """Contacts holding any of these address keys."""
    ids: set[int] = set()
    for part in chunks(sorted(keys)):
        query = select(contact_emails.c.contact_id).where(contact_emails.c.address_key.in_(part))
        ids.update(conn.execute(query).scalars())
    return get_contacts(conn, sorted(ids))


def contacts_named(conn: Connection, keys: Collection[str]) -> list[Contact]:
    ids: list[int] = []
    for part in chunks(sorted(keys)):
        ids += conn.execute(select(contacts.c.id).where(contacts.c.name_key.in_(part))).scalars()
    return get_contacts(conn, ids)


# --- writing --------------------------------------------------------------------------------


def _values(contact: NewContact, now: datetime) -> dict[str, Any]:
    return {"name": contact.name, "name_key": name_key(contact.name), "tags": list(contact.tags),
            "source": contact.source.value, "external_id": contact.external_id,
            "updated_at": now}


def insert_contacts(conn: Connection, items: Sequence[NewContact], now: datetime) -> list[int]:
    if not items:
        return []
    statement = insert(contacts).returning(contacts.c.id, sort_by_parameter_order=True)
    rows = conn.execute(statement, [{**_values(c, now), "created_at": now} for c in items])
    ids = [row.id for row in rows]
    _insert_details(conn, list(zip(ids, items, strict=True)))
    return ids


def update_contacts(conn: Connection, items: Sequence[tuple[int, NewContact]],
                    now: datetime) -> None:
    if not items:
        return
    ids = [id for id, _ in items]
    found: set[int] = set()
    for part in chunks(ids):
        found.update(conn.execute(select(contacts.c.id).where(contacts.c.id.in_(part))).scalars())
    missing = sorted(set(ids) - found)
    if missing:
        raise NotFound(f"no contact with id {missing[0]}")
    for id, contact in items:
        conn.execute(update(contacts).where(contacts.c.id == id).values(_values(contact, now)))
    for part in chunks(ids):
        conn.execute(delete(contact_emails).where(contact_emails.c.contact_id.in_(part)))
        conn.execute(delete(contact_terms).where(contact_terms.c.contact_id.in_(part)))
    _insert_details(conn, list(items))


def _insert_details(conn: Connection, pairs: Sequence[tuple[int, NewContact]]) -> None:
    emails: list[dict[str, Any]] = [
        {"contact_id": id, "position": position, "address": email,
         "address_key": address_key(email)}
        for id, contact in pairs for position, email in enumerate(contact.emails)]
    if not emails:
        return
    conn.execute(insert(contact_emails), emails)
    ranks = _ranks(conn, {str(row["address_key"]) for row in emails})
    terms = []
    for id, contact in pairs:
        keys = [address_key(email) for email in contact.emails]
        terms += [{"term": term, "rank": ranks.get(keys[position], NEVER_USED),
                   "name_key": name_key(contact.name), "contact_id": id, "position": position,
                   "address_key": keys[position]}
                  for term, position in search_terms(contact)]
    conn.execute(insert(contact_terms), terms)


def _ranks(conn: Connection, keys: Collection[str]) -> dict[str, float]:
    ranks: dict[str, float] = {}
    for part in chunks(sorted(keys)):
        query = (select(address_usage.c.address_key, address_usage.c.rank)
                 .where(address_usage.c.address_key.in_(part)))
        ranks.update((key, rank) for key, rank in conn.execute(query))
    return ranks


def delete_contacts(conn: Connection, ids: Sequence[int]) -> int:
    deleted = 0
    for part in chunks(list(ids)):
        deleted += conn.execute(delete(contacts).where(contacts.c.id.in_(part))).rowcount
    return deleted


def merge_contacts(conn: Connection, survivor: int, absorbed: Sequence[int]) -> None:
    """Group memberships move to the survivor; the absorbed contacts go."""
    for part in chunks(list(absorbed)):
        conn.execute(update(group_members).where(group_members.c.contact_id.in_(part))
                     .values(contact_id=survivor))
    delete_contacts(conn, absorbed)


def apply_changes(conn: Connection, changes: ContactChanges, now: datetime) -> list[int]:
    """Everything in one transaction; returns the ids of the added contacts."""
    update_contacts(conn, changes.update, now)
    for survivor, absorbed in changes.merges:
        merge_contacts(conn, survivor, absorbed)
    delete_contacts(conn, changes.remove)
    added = insert_contacts(conn, changes.add, now)
    if changes.sync_state is not None:
        save_sync_state(conn, changes.sync_state)
    return added


def add_contact(conn: Connection, contact: NewContact, now: datetime) -> Contact:
    (id,) = insert_contacts(conn, [contact], now)
    return get_contact(conn, id)


def replace_contact(conn: Connection, id: int, contact: NewContact, now: datetime) -> Contact:
    update_contacts(conn, [(id, contact)], now)
    return get_contact(conn, id)


def delete_contact(conn: Connection, id: int) -> None:
    if not delete_contacts(conn, [id]):
        raise NotFound(f"no contact with id {id}")


# --- usage and autocomplete -----------------------------------------------------------------


def record_usage(conn: Connection, counts: Mapping[str, int], now: datetime) -> None:
    """Add `counts[key]` uses at `now` to each address, and copy the new ranks to the
    address's search terms. Each key list goes as one bound parameter, and only the
    addresses some contact has get their terms updated: most recipients of a big
    message are no contact's (issue 17: this runs on the one SQLite writer, or on
    PostgreSQL's event loop). PostgreSQL does it all in one statement (sql/usage_rows.py
    says why)."""
    if is_postgres(conn):
        add_usage(conn, counts, now)
        return
    keys = sorted(counts)
    given = {"keys": bound_list(conn, keys)}
    known = {row.address_key: row for row in conn.execute(_KNOWN_USAGE, given)}
    with_terms = set(conn.execute(_KEYS_WITH_TERMS, given).scalars())
    weight = use_weight(now)
    usage, ranks = [], []
    for key in keys:
        row = known.get(key)
        rank = add_use(row.rank if row else None, weight, counts[key])
        usage.append((key, counts[key], now, rank))
        if key in with_terms:
            ranks.append({"b_key": key, "b_rank": rank})
    write_usage(conn, usage)
    if ranks:
        conn.execute(_UPDATE_TERM_RANKS, ranks)


# Built once, so SQLAlchemy compiles each once (sql/bound_lists.py); SQLite's only.
_KNOWN_USAGE = (select(address_usage)
                .where(in_bound_list(address_usage.c.address_key, "keys", postgres=False)))
_KEYS_WITH_TERMS = (select(contact_terms.c.address_key).distinct()
                    .where(in_bound_list(contact_terms.c.address_key, "keys",
                                         postgres=False)))
_UPDATE_TERM_RANKS = (update(contact_terms)
                      .where(contact_terms.c.address_key == bindparam("b_key"))
                      .values(rank=bindparam("b_rank")))


def suggest(conn: Connection, prefix: str, limit: int) -> list[Suggestion]:
    """Addresses of contacts whose name, a word of it, or the address starts with
    `prefix`; most used (often and lately) first, then by name. The ranking reads
    only the term index; the few winners are then read in full."""
    bounds = prefix_range(prefix)
    if bounds is None:
        return []
    best = _best_terms(conn, bounds, limit)
    if not best:
        return []
    found = {(row.contact_id, row.position): row for row in conn.execute(
        select(contact_emails.c.contact_id, contact_emails.c.position, contact_emails.c.address,
               contacts.c.name, address_usage.c.use_count, address_usage.c.last_used_at)
        .join(contacts, contacts.c.id == contact_emails.c.contact_id)
        .outerjoin(address_usage, address_usage.c.address_key == contact_emails.c.address_key)
        .where(contact_emails.c.contact_id.in_({contact for contact, _ in best})))}
    return [Suggestion(row.contact_id, row.name, row.address, row.use_count or 0,
                       row.last_used_at)
            for row in (found.get(pair) for pair in best) if row is not None]


def _best_terms(conn: Connection, bounds: tuple[str, str], limit: int) -> list[tuple[int, int]]:
    """The best `limit` (contact, address position) pairs. An address matches by up to
    a few terms (its name, a word, itself): a bounded sort of a few times `limit`
    rows, de-duplicated here, is much cheaper than DISTINCT over every match."""
    t = contact_terms
    fetch = limit * 4
    while True:
        rows = conn.execute(
            select(t.c.contact_id, t.c.position)
            .where(t.c.term >= bounds[0], t.c.term < bounds[1])
            .order_by(t.c.rank.desc(), t.c.name_key, t.c.contact_id, t.c.position)
            .limit(fetch)).all()
        best = list(dict.fromkeys((row.contact_id, row.position) for row in rows))
        if len(best) >= limit or len(rows) < fetch:
            return best[:limit]
        fetch *= 4


# --- directory sync state -------------------------------------------------------------------


def get_sync_state(conn: Connection, source: str) -> SyncState | None:
    row = conn.execute(select(sync_state).where(sync_state.c.source == source)).first()
    return SyncState(row.source, row.cursor, row.synced_at) if row else None


def save_sync_state(conn: Connection, state: SyncState) -> None:
    values = {"cursor": state.cursor, "synced_at": state.synced_at}
    changed = conn.execute(update(sync_state).where(sync_state.c.source == state.source)
                           .values(values))
    if not changed.rowcount:
        conn.execute(insert(sync_state).values(source=state.source, **values))
