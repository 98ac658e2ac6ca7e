"""The address book's use cases: every entry point (API, CLI, the submit path and
the periodic directory sync) calls these, so the rules live in one place.

Decisions are pure (`core.contacts`, `core.contact_merge`, `core.expand`);
this module reads what they need from the store and writes what they decide.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from outbox.clock import utcnow
from outbox.config import LdapSettings
from outbox.core import addresses
from outbox.core.compose import Submission
from outbox.core.contact_merge import Report, plan_dedupe, plan_directory_sync, plan_import
from outbox.core.contacts import (
    Alias,
    Contact,
    Group,
    Member,
    MemberKind,
    NewContact,
    Source,
    Suggestion,
    SyncState,
    address_key,
    check_name,
    group_cycle,
    name_key,
)
from outbox.core.expand import Expansion, expand_recipients, referenced_names
from outbox.errors import GroupCycle, InputError, NotConfigured, OutboxError, UnknownMember
from outbox.store.base import ContactStore

log = structlog.get_logger("outbox.contacts")
LDAP = "ldap"
FULL_EVERY = 86400.0  # seconds between full directory syncs in `sync_periodically`


@dataclass(frozen=True, slots=True)
class SyncResult:
    full: bool
    report: Report
    cursor: str


class ContactBook:
    def __init__(self, store: ContactStore, ldap: LdapSettings, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.ldap = ldap
        self.clock = clock
        self.usage = UsageRecorder(store)

    async def aclose(self) -> None:
        await self.usage.aclose()

    # -- contacts ------------------------------------------------------------------------

    async def add_contact(self, name: str, emails: Sequence[str],
                          tags: Sequence[str] = ()) -> Contact:
        return await self.store.add_contact(_checked(name, emails, tags), self.clock())

    async def replace_contact(self, id: int, name: str, emails: Sequence[str],
                              tags: Sequence[str] = ()) -> Contact:
        current = await self.store.get_contact(id)
        contact = replace(_checked(name, emails, tags), source=current.source,
                          external_id=current.external_id)
        return await self.store.replace_contact(id, contact, self.clock())

    async def delete_contact(self, id: int) -> None:
        await self.store.delete_contact(id)

    async def get_contact(self, id: int) -> Contact:
        return await self.store.get_contact(id)

    async def list_contacts(self, limit: int | None = None, after: int = 0) -> Sequence[Contact]:
        return await self.store.list_contacts(limit, after)

    # -- groups and aliases --------------------------------------------------------------

    async def save_group(self, group: Group) -> Group:
        """Create or replace a group; a member named twice is kept once (see `_firsts`)."""
        name = check_name(group.name, "name")
        kept = _firsts([_member_key(member, f"members[{index}]")
                        for index, member in enumerate(group.members)])
        saved = {name_key(g.name): g for g in await self.store.list_groups()}
        cycle = group_cycle(saved, replace(group, name=name))
        if cycle:
            field = _member_field(group, cycle[1])
            raise GroupCycle(f"{field}: the group would contain itself: {' > '.join(cycle)}",
                             field=field)
        members = tuple(group.members[index] for index in kept)
        try:
            return await self.store.save_group(replace(group, name=name, members=members),
                                               self.clock())
        except UnknownMember as exc:  # it counts the members kept: name the one as given
            raise _as_given(exc, kept) from None

    async def list_groups(self) -> Sequence[Group]:
        return await self.store.list_groups()

    async def delete_group(self, name: str) -> None:
        await self.store.delete_group(name)

    async def list_aliases(self) -> Sequence[Alias]:
        return await self.store.list_aliases()

    async def delete_alias(self, name: str) -> None:
        await self.store.delete_alias(name)

    async def save_alias(self, alias: Alias) -> Alias:
        name = check_name(alias.name, "name")
        if not alias.targets:
            raise InputError("targets: an alias needs at least one address", field="targets")
        kept = _firsts([addresses.parse_mailbox(target, f"targets[{index}]").dedupe_key
                        for index, target in enumerate(alias.targets)])
        targets = tuple(alias.targets[index] for index in kept)
        return await self.store.save_alias(Alias(name, targets), self.clock())

    # -- import, dedupe, sync ------------------------------------------------------------

    async def import_file(self, data: bytes, filename: str = "", format: str | None = None,
                          apply: bool = True) -> Report:
        """Read a CSV or vCard file and merge it into the book; the report says
        what was added, merged into existing contacts, unchanged or skipped."""
        from outbox.addressbook.importers import decode, detect_format, read_contacts

        text = decode(data)
        read = read_contacts(text, format or detect_format(filename, text))
        keys = {address_key(e) for _, record in read.records for e in record.emails}
        existing = await self.store.find_contacts(keys)
        changes, report = plan_import(read.records, existing, read.unit)
        if apply and not changes.is_empty:
            await self.store.apply_contact_changes(changes, self.clock())
        return replace(report, read=report.read + len(read.problems),
                       skipped=report.skipped + len(read.problems),
                       notes=(*read.problems, *report.notes))

    async def dedupe(self, apply: bool = False) -> Report:
        """Find contacts sharing an address; merge them when `apply`."""
        changes, report = plan_dedupe(await self.store.list_contacts())
        if apply and not changes.is_empty:
            await self.store.apply_contact_changes(changes, self.clock())
        return report

    async def sync_ldap(self, full: bool = False) -> SyncResult:
        """Bring the directory's contacts up to date: a full sync the first time
        (or when asked), otherwise what changed since the last sync."""
        from outbox.addressbook.ldap import LdapDirectory  # ldap3 only when syncing

        if not self.ldap.url:
            raise NotConfigured("[ldap] url is not set, so there is no directory to sync "
                                "from", key="ldap.url", hint="set [ldap] url and base_dn "
                                "in the config")
        directory = LdapDirectory(self.ldap)
        state = await self.store.get_sync_state(LDAP)
        full = full or state is None or not state.cursor
        read = await directory.read(None if full or state is None else state.cursor)
        existing = await self.store.list_contacts(source=Source.LDAP)
        now = self.clock()
        changes, report = plan_directory_sync(read.entries, existing, read.present,
                                              SyncState(LDAP, read.cursor, now))
        await self.store.apply_contact_changes(changes, now)
        log.info("directory synced", full=full, added=report.added, updated=report.updated,
                 removed=report.removed, skipped=report.skipped)
        return SyncResult(full, report, read.cursor)

    async def sync_state(self) -> SyncState | None:
        """The directory's last sync (when it ran, where it stopped); None if none ran."""
        return await self.store.get_sync_state(LDAP)

    async def sync_periodically(self) -> None:
        """For `outbox serve`: sync every [ldap] sync_interval, a full sync at start and
        then once a day; a failed sync is logged and tried again. Returns at once when
        no directory or no interval is configured."""
        interval = self.ldap.sync_interval.total_seconds()
        if not self.ldap.url or interval <= 0:
            return
        last_full = -math.inf
        while True:
            try:
                result = await self.sync_ldap(full=time.monotonic() - last_full >= FULL_EVERY)
                last_full = time.monotonic() if result.full else last_full
            except OutboxError as exc:
                log.warning("directory sync failed; will try again", error=exc.one_line())
            await asyncio.sleep(interval)

    # -- compose: suggest, expand, count usage -------------------------------------------

    async def suggest(self, prefix: str, limit: int = 10) -> Sequence[Suggestion]:
        return await self.store.suggest(prefix, limit)

    async def expand(self, submission: Submission) -> tuple[Submission, Expansion]:
        """Aliases, groups and contact names in To/Cc/Bcc replaced by addresses."""
        names = referenced_names(submission.to, submission.cc, submission.bcc)
        if not names:
            return submission, Expansion(submission.to, submission.cc, submission.bcc)
        book = await self.store.address_book_for(names)
        expansion = expand_recipients(submission.to, submission.cc, submission.bcc, book)
        if expansion.cycles:
            log.warning("group cycle skipped while expanding", groups=list(expansion.cycles))
        expanded = replace(submission, to=expansion.to or (), cc=expansion.cc or (),
                           bcc=expansion.bcc or ())
        return expanded, expansion

    def note_usage(self, recipients: Iterable[str]) -> None:
        self.usage.note(recipients, self.clock())


def _checked(name: str, emails: Sequence[str], tags: Sequence[str]) -> NewContact:
    if not emails:
        raise InputError("emails: a contact needs at least one address", field="emails")
    checked = [addresses.parse_mailbox(e, f"emails[{i}]").addr_spec for i, e in enumerate(emails)]
    first: dict[str, int] = {}
    for index, address in enumerate(checked):
        seen = first.setdefault(address_key(address), index)
        if seen != index:
            raise InputError(f"emails[{index}]: '{address}' is the same address as "
                             f"emails[{seen}]; list each address once", field=f"emails[{index}]")
    clean_tags = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))
    return NewContact(" ".join(name.split()), tuple(checked), clean_tags)


def _firsts(keys: Sequence[Hashable]) -> list[int]:
    """The positions of each key's first mention, in order. An alias's addresses and a
    group's members are sets to an operator: one named twice is kept once, as first
    spelt (refusing would break imports that repeat; found by a stranger pass)."""
    first: dict[Hashable, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    return sorted(first.values())


def _member_key(member: Member, field: str) -> tuple[MemberKind, Hashable]:
    """What makes two members one: an address's mailbox (`mailbox_key`, as recipients
    are compared), a contact's id, a group's name (`name_key`). Checks the address."""
    if member.kind is MemberKind.ADDRESS:
        return member.kind, addresses.parse_mailbox(member.value, field).dedupe_key
    if member.kind is MemberKind.GROUP:
        return member.kind, name_key(member.value)
    return member.kind, member.value


def _as_given(exc: UnknownMember, kept: Sequence[int]) -> UnknownMember:
    """The store's `members[i]` counts the members it was given, the repeats gone: the
    same refusal, naming the member's position in the request."""
    given = {f"members[{stored}]": f"members[{index}]" for stored, index in enumerate(kept)}
    field = given.get(exc.field or "")
    if field is None:
        return exc
    return UnknownMember(field + exc.message.removeprefix(exc.field or ""), field=field)


def _member_field(group: Group, nested: str) -> str:
    """`members[i]`: the member naming the group through which `group` would contain
    itself (the second link of the cycle's chain)."""
    for index, member in enumerate(group.members):
        if member.kind is MemberKind.GROUP and name_key(member.value) == name_key(nested):
            return f"members[{index}]"
    return "members"


USAGE_CHUNK = 200  # addresses per usage transaction


class UsageRecorder:
    """Counts the addresses mail is submitted to, written in batches off the submit
    path (usage only ranks autocomplete: a lost batch is not worth an fsync each)."""

    def __init__(self, store: ContactStore, delay: float = 0.5) -> None:
        self.store = store
        self.delay = delay
        self._counts: Counter[str] = Counter()
        self._latest: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._writing = False

    def note(self, recipients: Iterable[str], now: datetime) -> None:
        self._counts.update(address_key(r) for r in recipients)
        self._latest = max(now, self._latest) if self._latest else now
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        # Addresses noted while a batch is written find this task not done and start
        # none: they are this task's next batch.
        while True:
            await asyncio.sleep(self.delay)
            self._writing = True
            try:
                await self.flush()
            finally:
                self._writing = False
            if not self._counts:
                return

    async def flush(self) -> None:
        """Write the counts, USAGE_CHUNK addresses per transaction: a 1,000-recipient
        message's usage in one would hold SQLite's single writer (and every submit
        waiting on it) for some 20 ms."""
        counts, self._counts = self._counts, Counter()
        if not counts or self._latest is None:
            return
        keys = sorted(counts)
        for start in range(0, len(keys), USAGE_CHUNK):
            part = {key: counts[key] for key in keys[start:start + USAGE_CHUNK]}
            try:
                await self.store.record_usage(part, self._latest)
            except OutboxError as exc:
                log.warning("could not count address usage", error=exc.one_line())
                return

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            if not self._writing:  # waiting, or not even started: write now instead
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
