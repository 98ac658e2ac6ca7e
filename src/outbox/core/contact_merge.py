"""Plans that change the address book, each with a report a person can read. Pure.

- `plan_import`: records from a CSV or vCard file. Records that share an
  address are one person (merged within the file first); a record sharing an
  address with an existing contact is merged into it (addresses and tags
  added, the existing name kept); the rest are added. Bad addresses are
  skipped and reported by record number (a CSV file's by line).
- `plan_dedupe`: contacts sharing an address are merged into one (the
  directory's contact if there is one, else the oldest); contacts that only
  share a name are reported as possible duplicates and left alone.
- `plan_directory_sync`: the directory is the authority for the contacts it
  owns (matched by its id): new entries are added, changed ones replaced,
  and ones gone from the directory removed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from outbox.core import addresses
from outbox.core.contacts import (
    Contact,
    ContactChanges,
    NewContact,
    Source,
    SyncState,
    address_key,
    merged,
    name_key,
    unique_addresses,
)
from outbox.errors import InvalidAddress


@dataclass(frozen=True, slots=True)
class Report:
    """What a plan does, in counts and one line per notable record."""

    read: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    merged: int = 0
    skipped: int = 0
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        counts = [f"{self.read} read", f"{self.added} added", f"{self.updated} updated",
                  f"{self.unchanged} unchanged", f"{self.merged} merged",
                  f"{self.removed} removed", f"{self.skipped} skipped"]
        return ", ".join(counts)

    def lines(self) -> list[str]:
        return [self.summary(), *self.notes]


@dataclass
class _Tally:
    notes: list[str] = field(default_factory=list)
    skipped: int = 0
    merged: int = 0


# --- validation -----------------------------------------------------------------------------


def valid_emails(emails: Iterable[str], where: str, tally: _Tally) -> tuple[str, ...]:
    """The addresses that parse, as addr-specs, in order without repeats."""
    good: list[str] = []
    for email in emails:
        try:
            good.append(addresses.parse_mailbox(email, "email").addr_spec)
        except InvalidAddress as exc:
            tally.notes.append(f"{where}: skipped address {email.strip()!r}: "
                               f"{exc.message.removeprefix('email: ')}")
    return unique_addresses(good)


def _cleaned(record: NewContact, where: str, tally: _Tally) -> NewContact | None:
    emails = valid_emails(record.emails, where, tally)
    if not emails:
        tally.skipped += 1
        tally.notes.append(f"{where}: skipped {record.name or 'a record'!r}: no valid address")
        return None
    tags = tuple(dict.fromkeys(t.strip() for t in record.tags if t.strip()))
    return replace(record, name=" ".join(record.name.split()), emails=emails, tags=tags)


# --- import ---------------------------------------------------------------------------------


def plan_import(records: Sequence[tuple[int, NewContact]], existing: Sequence[Contact],
                unit: str = "record") -> tuple[ContactChanges, Report]:
    """`records`: (number, contact) as read from the file, the number a `unit` ("line"
    for CSV); `existing`: the contacts owning any of the records' addresses."""
    tally = _Tally()
    combined = _merge_within_file(records, tally, unit)
    by_address = _index(existing)
    add: list[NewContact] = []
    update: dict[int, NewContact] = {}
    current = {c.id: c.as_new() for c in existing}
    unchanged = 0
    for where, record in combined:
        owners = sorted({by_address[k] for k in map(address_key, record.emails)
                         if k in by_address})
        if not owners:
            add.append(record)
            continue
        if len(owners) > 1:
            tally.notes.append(f"{where}: matches contacts {', '.join(map(str, owners))}; merged "
                               f"into {owners[0]} (run `outbox contacts dedupe` for the others)")
        target = owners[0]
        result = merged(current[target], record)
        if result == current[target]:
            unchanged += 1
            continue
        tally.notes.append(f"{where}: merged into contact {target} ({current[target].name})")
        current[target] = update[target] = result
    changes = ContactChanges(add=tuple(add), update=tuple(update.items()))
    return changes, Report(read=len(records), added=len(add), updated=len(update),
                           unchanged=unchanged, merged=tally.merged, skipped=tally.skipped,
                           notes=tuple(tally.notes))


def _merge_within_file(records: Sequence[tuple[int, NewContact]], tally: _Tally,
                       unit: str) -> list[tuple[str, NewContact]]:
    """Records sharing an address become one, kept at the first one's place."""
    people: dict[int, tuple[str, NewContact]] = {}  # slot -> (where, record), in file order
    owner: dict[str, int] = {}  # address key -> slot
    slots = itertools.count()
    for number, raw in records:
        where = f"{unit} {number}"
        record = _cleaned(raw, where, tally)
        if record is None:
            continue
        hits = sorted({owner[k] for k in map(address_key, record.emails) if k in owner})
        if hits:
            slot = hits[0]
            first, result = people[slot]
            for other in hits[1:]:  # this record links two earlier ones
                result = merged(result, people.pop(other)[1])
            people[slot] = (first, merged(result, record))
            tally.merged += 1
            tally.notes.append(f"{where}: same person as {first} (a shared address); merged")
        else:
            slot = next(slots)
            people[slot] = (where, record)
        for key in map(address_key, people[slot][1].emails):
            owner[key] = slot
    return list(people.values())


def _index(contacts: Iterable[Contact]) -> dict[str, int]:
    """address key -> the lowest contact id holding it."""
    by_address: dict[str, int] = {}
    for contact in sorted(contacts, key=lambda c: c.id):
        for email in contact.emails:
            by_address.setdefault(address_key(email), contact.id)
    return by_address


# --- dedupe ---------------------------------------------------------------------------------


def plan_dedupe(contacts: Sequence[Contact]) -> tuple[ContactChanges, Report]:
    """Merge contacts that share an address; report same-name contacts that do not."""
    notes: list[str] = []
    updates: list[tuple[int, NewContact]] = []
    merges: list[tuple[int, tuple[int, ...]]] = []
    for cluster in _clusters(contacts):
        survivor, absorbed, kept = _choose(cluster)
        if kept:
            notes.append(f"contacts {', '.join(str(c.id) for c in kept)} share an address but "
                         "all come from the directory: fix them there")
        if not absorbed:
            continue
        result = survivor.as_new()
        for contact in absorbed:
            result = merged(result, contact.as_new())
        ids = tuple(c.id for c in absorbed)
        notes.append(f"merge {', '.join(map(str, ids))} into {survivor.id} ({survivor.name}): "
                     f"{', '.join(result.emails)}")
        updates.append((survivor.id, result))
        merges.append((survivor.id, ids))
    notes += _same_names(contacts, {i for _, ids in merges for i in ids})
    changes = ContactChanges(update=tuple(updates), merges=tuple(merges))
    return changes, Report(read=len(contacts), updated=len(updates),
                           merged=sum(len(ids) for _, ids in merges), notes=tuple(notes))


def _clusters(contacts: Sequence[Contact]) -> list[list[Contact]]:
    """Groups of two or more contacts linked by shared addresses (union-find)."""
    parent = {c.id: c.id for c in contacts}

    def root(id: int) -> int:
        while parent[id] != id:
            parent[id] = parent[parent[id]]
            id = parent[id]
        return id

    first_owner: dict[str, int] = {}
    for contact in contacts:
        for key in map(address_key, contact.emails):
            other = first_owner.setdefault(key, contact.id)
            parent[root(contact.id)] = root(other)
    clusters: dict[int, list[Contact]] = {}
    for contact in contacts:
        clusters.setdefault(root(contact.id), []).append(contact)
    return [sorted(c, key=lambda x: x.id) for c in clusters.values() if len(c) > 1]


def _choose(cluster: list[Contact]) -> tuple[Contact, list[Contact], list[Contact]]:
    """(survivor, absorbed, directory contacts that must stay as they are)."""
    directory = [c for c in cluster if c.source is Source.LDAP]
    survivor = directory[0] if directory else cluster[0]
    absorbed = [c for c in cluster if c.source is not Source.LDAP and c is not survivor]
    return survivor, absorbed, directory if len(directory) > 1 else []


def _same_names(contacts: Sequence[Contact], merged_ids: set[int]) -> list[str]:
    by_name: dict[str, list[Contact]] = {}
    for contact in contacts:
        if contact.id not in merged_ids and name_key(contact.name):
            by_name.setdefault(name_key(contact.name), []).append(contact)
    return [f"possible duplicates (same name, no shared address, not merged): "
            f"{', '.join(f'{c.id} <{c.emails[0]}>' for c in same if c.emails)}"
            for same in by_name.values() if len(same) > 1]


# --- directory sync -------------------------------------------------------------------------


def plan_directory_sync(entries: Sequence[NewContact], existing: Sequence[Contact],
                        present: set[str] | None, state: SyncState) -> tuple[ContactChanges,
                                                                              Report]:
    """`entries`: what the directory returned (all of them, or those changed since
    the cursor); `existing`: the book's directory contacts; `present`: every id the
    directory still has (None: `entries` is the full set)."""
    tally = _Tally()
    mine = {c.external_id: c for c in existing if c.external_id}
    add: list[NewContact] = []
    update: list[tuple[int, NewContact]] = []
    unchanged = 0
    seen: set[str] = set()
    for entry in entries:
        where = f"entry {entry.external_id}"
        record = _cleaned(entry, where, tally)
        if record is None or record.external_id is None:
            continue
        seen.add(record.external_id)
        known = mine.get(record.external_id)
        if known is None:
            add.append(replace(record, source=Source.LDAP))
        elif known.as_new() != replace(record, source=Source.LDAP):
            update.append((known.id, replace(record, source=Source.LDAP)))
        else:
            unchanged += 1
    keep = present if present is not None else seen
    remove = tuple(sorted(c.id for ext, c in mine.items() if ext not in keep))
    changes = ContactChanges(add=tuple(add), update=tuple(update), remove=remove,
                             sync_state=state)
    return changes, Report(read=len(entries), added=len(add), updated=len(update),
                           unchanged=unchanged, removed=len(remove), skipped=tally.skipped,
                           notes=tuple(tally.notes))
