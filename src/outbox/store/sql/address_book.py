"""The address-book verbs of `store.base.Store`, each one transaction; `SqlStore`
inherits them. Their SQL is in `sql/contacts.py` and `sql/groups.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from typing import Any

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

MAX_SUGGESTIONS = 50


class AddressBookVerbs:
    """Mixed into `SqlStore`, which supplies the transaction runners."""

    _read: Callable[..., Awaitable[Any]]
    _write: Callable[..., Awaitable[Any]]

    async def add_contact(self, contact: NewContact, now: datetime) -> Contact:
        result: Contact = await self._write(sql.add_contact, contact, now)
        return result

    async def replace_contact(self, id: int, contact: NewContact, now: datetime) -> Contact:
        result: Contact = await self._write(sql.replace_contact, id, contact, now)
        return result

    async def delete_contact(self, id: int) -> None:
        await self._write(sql.delete_contact, id)

    async def get_contact(self, id: int) -> Contact:
        result: Contact = await self._read(sql.get_contact, id)
        return result

    async def list_contacts(self, limit: int | None = None, after: int = 0,
                            source: Source | None = None) -> list[Contact]:
        result: list[Contact] = await self._read(sql.list_contacts, limit, after, source)
        return result

    async def find_contacts(self, address_keys: Collection[str]) -> list[Contact]:
        result: list[Contact] = await self._read(sql.find_contacts, address_keys)
        return result

    async def apply_contact_changes(self, changes: ContactChanges, now: datetime) -> list[int]:
        result: list[int] = await self._write(sql.apply_changes, changes, now)
        return result

    async def save_group(self, group: Group, now: datetime) -> Group:
        result: Group = await self._write(gsql.save_group, group, now)
        return result

    async def get_group(self, name: str) -> Group:
        result: Group = await self._read(gsql.get_group, name)
        return result

    async def delete_group(self, name: str) -> None:
        await self._write(gsql.delete_group, name)

    async def list_groups(self) -> list[Group]:
        result: list[Group] = await self._read(gsql.list_groups)
        return result

    async def save_alias(self, alias: Alias, now: datetime) -> Alias:
        result: Alias = await self._write(gsql.save_alias, alias, now)
        return result

    async def delete_alias(self, name: str) -> None:
        await self._write(gsql.delete_alias, name)

    async def list_aliases(self) -> list[Alias]:
        result: list[Alias] = await self._read(gsql.list_aliases)
        return result

    async def address_book_for(self, names: Collection[str]) -> AddressBook:
        if not names:
            return AddressBook()
        result: AddressBook = await self._read(gsql.address_book_for, names)
        return result

    async def record_usage(self, counts: Mapping[str, int], now: datetime) -> None:
        if counts:
            await self._write(sql.record_usage, counts, now)

    async def suggest(self, prefix: str, limit: int = 10) -> list[Suggestion]:
        if not 1 <= limit <= MAX_SUGGESTIONS:
            raise InputError(f"limit must be 1 to {MAX_SUGGESTIONS}", field="limit")
        result: list[Suggestion] = await self._read(sql.suggest, prefix, limit)
        return result

    async def get_sync_state(self, source: str) -> SyncState | None:
        result: SyncState | None = await self._read(sql.get_sync_state, source)
        return result

    async def reroute_recipients(self, id: str, relays: Mapping[str, str]) -> None:
        if relays:
            await self._write(gsql.reroute_recipients, id, relays)
