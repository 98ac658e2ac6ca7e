"""`SqlContacts`: `store.base.ContactStore` over a `Runner`, each verb one
transaction. Their SQL is in `sql/contacts.py` and `sql/groups.py`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from outbox.core.contacts import (
    AddressBook,
    Alias,
    Contact,
    ContactChanges,
    Group,
    NewContact,
    Source,
    Suggestion,
    SyncState,
)
from outbox.errors import InputError
from outbox.store.sql import contacts as sql
from outbox.store.sql import groups as gsql
from outbox.store.sql.runner import Runner

MAX_SUGGESTIONS = 50


class SqlContacts:
    """The address book's verbs over one runner."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def add_contact(self, contact: NewContact, now: datetime) -> Contact:
        return await self._run.write(sql.add_contact, contact, now)

    async def replace_contact(self, id: int, contact: NewContact, now: datetime) -> Contact:
        return await self._run.write(sql.replace_contact, id, contact, now)

    async def delete_contact(self, id: int) -> None:
        await self._run.write(sql.delete_contact, id)

    async def get_contact(self, id: int) -> Contact:
        return await self._run.read(sql.get_contact, id)

    async def list_contacts(self, limit: int | None = None, after: int = 0,
                            source: Source | None = None) -> Sequence[Contact]:
        return await self._run.read(sql.list_contacts, limit, after, source)

    async def find_contacts(self, address_keys: Collection[str]) -> Sequence[Contact]:
        return await self._run.read(sql.find_contacts, address_keys)

    async def apply_contact_changes(self, changes: ContactChanges,
                                    now: datetime) -> Sequence[int]:
        return await self._run.write(sql.apply_changes, changes, now)

    async def save_group(self, group: Group, now: datetime) -> Group:
        return await self._run.write(gsql.save_group, group, now)

    async def get_group(self, name: str) -> Group:
        return await self._run.read(gsql.get_group, name)

    async def delete_group(self, name: str) -> None:
        await self._run.write(gsql.delete_group, name)

    async def list_groups(self) -> Sequence[Group]:
        return await self._run.read(gsql.list_groups)

    async def save_alias(self, alias: Alias, now: datetime) -> Alias:
        return await self._run.write(gsql.save_alias, alias, now)

    async def delete_alias(self, name: str) -> None:
        await self._run.write(gsql.delete_alias, name)

    async def list_aliases(self) -> Sequence[Alias]:
        return await self._run.read(gsql.list_aliases)

    async def address_book_for(self, names: Collection[str]) -> AddressBook:
        if not names:
            return AddressBook()
        return await self._run.read(gsql.address_book_for, names)

    async def record_usage(self, counts: Mapping[str, int], now: datetime) -> None:
        if counts:
            await self._run.write(sql.record_usage, counts, now)

    async def suggest(self, prefix: str, limit: int = 10) -> Sequence[Suggestion]:
        if not 1 <= limit <= MAX_SUGGESTIONS:
            raise InputError(f"limit must be 1 to {MAX_SUGGESTIONS}", field="limit")
        return await self._run.read(sql.suggest, prefix, limit)

    async def get_sync_state(self, source: str) -> SyncState | None:
        return await self._run.read(sql.get_sync_state, source)
