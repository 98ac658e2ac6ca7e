"""The address book's storage contract (`store.contacts`): contacts, groups,
aliases, usage for ranking, autocomplete, directory sync state."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

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


class ContactStore(Protocol):
    """The address book (core.contacts), usage counts, autocomplete, sync state.

    Contacts and groups: `errors.NotFound` for an unknown id or name; a group member
    that names an unknown contact or group is `errors.InputError` naming the member."""

    async def add_contact(self, contact: NewContact, now: datetime) -> Contact:
        """Create a contact; returns it with its new id."""

    async def replace_contact(self, id: int, contact: NewContact, now: datetime) -> Contact:
        """Replace everything about the contact with this id."""

    async def delete_contact(self, id: int) -> None:
        """Also removes it from every group."""

    async def get_contact(self, id: int) -> Contact:
        """The contact with this id."""

    async def list_contacts(self, limit: int | None = None, after: int = 0,
                            source: Source | None = None) -> Sequence[Contact]:
        """By id, those after `after`; all of them without `limit`."""

    async def find_contacts(self, address_keys: Collection[str]) -> Sequence[Contact]:
        """Contacts holding any of these addresses (`core.contacts.address_key`)."""

    async def apply_contact_changes(self, changes: ContactChanges,
                                    now: datetime) -> Sequence[int]:
        """Updates, merges, removals, additions and the sync state, in one
        transaction; returns the ids of the added contacts."""

    async def save_group(self, group: Group, now: datetime) -> Group:
        """Create or replace the group with this name."""

    async def get_group(self, name: str) -> Group:
        """The group with this name, with its members in order."""

    async def delete_group(self, name: str) -> None:
        """Delete the group with this name (groups that list it lose the member)."""

    async def list_groups(self) -> Sequence[Group]:
        """Every group, by name."""

    async def save_alias(self, alias: Alias, now: datetime) -> Alias:
        """Create or replace the alias with this name."""

    async def delete_alias(self, name: str) -> None:
        """Delete the alias with this name."""

    async def list_aliases(self) -> Sequence[Alias]:
        """Every alias, by name."""

    async def address_book_for(self, names: Collection[str]) -> AddressBook:
        """The aliases, groups (nested ones included) and contacts these name keys
        refer to: what `core.expand` needs for one submission."""

    async def record_usage(self, counts: Mapping[str, int], now: datetime) -> None:
        """Count uses of these addresses (by address key) at `now`, for ranking."""

    async def suggest(self, prefix: str, limit: int = 10) -> Sequence[Suggestion]:
        """Contacts' addresses whose name, a word of the name, or the address starts
        with `prefix`; most used (often and lately) first."""

    async def get_sync_state(self, source: str) -> SyncState | None:
        """Where the last sync from this directory got to, if it ever ran."""
