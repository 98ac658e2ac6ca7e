"""The address book's values, and how names and addresses are compared. Pure.

A contact has a name, one or more email addresses (the first is the one a
group or a typed name sends to) and tags. A group lists members: contacts,
literal addresses and other groups (nested; cycles are skipped when it is
expanded). An alias is a name for one or more addresses. Names compare by
`name_key` (Unicode NFKC, case-folded, whitespace folded); addresses by
`address_key` (the whole address lower-cased, which is how mail systems and
people treat them in practice, though RFC 5321 lets a local part be case-sensitive).

Usage ranking ("frecency"): each use of an address adds a weight that grows
exponentially with time, `2 ** ((at - EPOCH) / HALF_LIFE)`, and a row keeps the
logarithm of the sum. Ordering by that one number is ordering by how often
and how recently the address was used, with older uses counting half as much
per `HALF_LIFE`, at any moment, without rewriting rows as time passes.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from outbox.core.addresses import quote_phrase
from outbox.errors import InputError

HALF_LIFE = timedelta(days=30)
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
MAX_TERM = "\U0010ffff"  # sorts after every character: `prefix <= term < prefix + MAX_TERM`
NEVER_USED = -1e300  # the rank of an address nobody has sent to yet


class Source(StrEnum):
    LOCAL = "local"  # typed in through the API or CLI
    CSV = "csv"
    VCARD = "vcard"
    LDAP = "ldap"  # owned by the directory: a sync replaces it, or removes it


@dataclass(frozen=True, slots=True)
class NewContact:
    """A contact as given (by a user, a file or the directory), before it has an id."""

    name: str
    emails: tuple[str, ...]
    tags: tuple[str, ...] = ()
    source: Source = Source.LOCAL
    external_id: str | None = None  # the directory's id (LDAP entryUUID)


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    name: str
    emails: tuple[str, ...]
    tags: tuple[str, ...] = ()
    source: Source = Source.LOCAL
    external_id: str | None = None
    updated_at: datetime | None = None

    def as_new(self) -> NewContact:
        return NewContact(self.name, self.emails, self.tags, self.source, self.external_id)


class MemberKind(StrEnum):
    CONTACT = "contact"
    GROUP = "group"
    ADDRESS = "address"


@dataclass(frozen=True, slots=True)
class Member:
    """One entry of a group: a contact (by id), a nested group (by name) or an address."""

    kind: MemberKind
    value: str  # the contact id as text, the group's name, or the address

    @classmethod
    def contact(cls, id: int) -> Member:
        return cls(MemberKind.CONTACT, str(id))

    @classmethod
    def group(cls, name: str) -> Member:
        return cls(MemberKind.GROUP, name)

    @classmethod
    def address(cls, address: str) -> Member:
        return cls(MemberKind.ADDRESS, address)


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    members: tuple[Member, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Alias:
    name: str
    targets: tuple[str, ...]  # addresses, as typed ("Ann <ann@x.test>" is fine)


@dataclass(frozen=True, slots=True)
class AddressBook:
    """The part of the address book a submission refers to (see `core.expand`):
    aliases and groups by name key, contacts by name key and by id."""

    aliases: Mapping[str, Alias] = field(default_factory=dict)
    groups: Mapping[str, Group] = field(default_factory=dict)
    contacts_by_name: Mapping[str, tuple[Contact, ...]] = field(default_factory=dict)
    contacts_by_id: Mapping[int, Contact] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One autocomplete answer: an address of a contact, with its usage."""

    contact_id: int
    name: str
    address: str
    use_count: int
    last_used_at: datetime | None

    def formatted(self) -> str:
        """How the UI offers it, read back as this one address: a name with a comma,
        quote or angle bracket is quoted ("Smith, John" would otherwise be two entries)."""
        return f"{quote_phrase(self.name)} <{self.address}>" if self.name else self.address


@dataclass(frozen=True, slots=True)
class SyncState:
    """Where the last directory sync stopped: its change cursor and when it ran."""

    source: str
    cursor: str
    synced_at: datetime


@dataclass(frozen=True, slots=True)
class ContactChanges:
    """What one import, dedupe or sync does to the book, applied in one transaction.

    `merges` maps a surviving contact id to the ids it absorbs: their group
    memberships move to the survivor, then they are deleted."""

    add: tuple[NewContact, ...] = ()
    update: tuple[tuple[int, NewContact], ...] = ()
    remove: tuple[int, ...] = ()
    merges: tuple[tuple[int, tuple[int, ...]], ...] = ()
    sync_state: SyncState | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.add or self.update or self.remove or self.merges)


# --- normalization --------------------------------------------------------------------------


def name_key(name: str) -> str:
    """How names compare: 'Ann  LEE' and 'ann lee' are the same name."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def address_key(address: str) -> str:
    """How addresses compare in the book: case-insensitive as a whole."""
    return unicodedata.normalize("NFC", address.strip()).lower()


def search_terms(contact: NewContact) -> list[tuple[str, int]]:
    """What a prefix may match, as (term, address position): for each address, the
    whole name (which covers its first word), each later word, and the address."""
    key = name_key(contact.name)
    words = list(dict.fromkeys(w for w in [key, *key.split()[1:]] if w))
    terms: dict[tuple[str, int], None] = {}
    for position, email in enumerate(contact.emails):
        for term in [*words, address_key(email)]:
            terms[(term, position)] = None
    return list(terms)


def prefix_range(prefix: str) -> tuple[str, str] | None:
    """The [low, high) range of terms that start with what the user typed."""
    low = name_key(prefix) if "@" not in prefix else address_key(prefix)
    return (low, low + MAX_TERM) if low else None


def merged(first: NewContact, second: NewContact) -> NewContact:
    """One contact holding both: `first`'s name (or `second`'s when it has none),
    addresses and tags in order without repeats."""
    return NewContact(
        name=first.name or second.name,
        emails=unique_addresses([*first.emails, *second.emails]),
        tags=tuple(dict.fromkeys([*first.tags, *second.tags])),
        source=first.source,
        external_id=first.external_id,
    )


def unique_addresses(emails: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for email in emails:
        seen.setdefault(address_key(email), email.strip())
    return tuple(seen.values())


# --- usage ranking --------------------------------------------------------------------------


def use_weight(at: datetime) -> float:
    """log2-scale weight of one use at `at`: one more per HALF_LIFE since EPOCH."""
    return (at - EPOCH) / HALF_LIFE


def add_use(rank: float | None, weight: float, times: int = 1) -> float:
    """log2(2**rank + times * 2**weight), computed without overflow."""
    added = weight + math.log2(times)
    if rank is None:
        return added
    high, low = max(rank, added), min(rank, added)
    return high + math.log2(1.0 + 2.0 ** (low - high))


# --- rules for names and groups -------------------------------------------------------------

# A name is checked as written, by one regex the API also publishes (api/described.py):
# the spaces JSON Schema's \s knows separate words; the characters that make it look like
# an address or that do not show (controls, invisible formatting, line separators) are
# refused; everything else, in any script, is a name's.
NAME_SPACES = r"\t\n\x0b\x0c\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NAME_REFUSED = (r'@<>,;:"()\\\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f'
                r"\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb")
NAME_MAX = 200
_WORD = f"[^{NAME_SPACES}{NAME_REFUSED}]"
NAME_PATTERN = f"^[{NAME_SPACES}]*{_WORD}(?:[{NAME_SPACES}]*{_WORD})*[{NAME_SPACES}]*$"
_NAME = re.compile(NAME_PATTERN)
_REFUSED = re.compile(f"[{NAME_REFUSED}]")


def check_name(name: str, field: str) -> str:
    """A group's or alias's name must read as a name in a recipient field: 1 to 200
    characters, something visible, none of @ < > , ; : " ( ) \\ or control or invisible
    characters. Returns it with its spaces collapsed."""
    if len(name) > NAME_MAX or not name.strip():
        raise InputError(f"{field}: a name needs 1 to {NAME_MAX} characters", field=field)
    if not _NAME.fullmatch(name):
        bad = sorted(set(_REFUSED.findall(name))) or sorted(
            {c for c in name if c.isspace()} - {" "})
        raise InputError(f"{field}: {name!r} may not contain {' '.join(map(repr, bad))} "
                         "(it must not look like an address)", field=field)
    return " ".join(name.split())


def group_cycle(groups: Mapping[str, Group], group: Group) -> list[str] | None:
    """The chain of names by which `group` would contain itself once saved
    (`groups`: the saved ones by name key), or None."""
    table = {**groups, name_key(group.name): group}
    target = name_key(group.name)

    def walk(key: str, chain: list[str], seen: set[str]) -> list[str] | None:
        for member in table[key].members if key in table else ():
            if member.kind is not MemberKind.GROUP:
                continue
            nested = name_key(member.value)
            if nested == target:
                return [*chain, member.value]
            if nested not in seen:
                seen.add(nested)
                found = walk(nested, [*chain, member.value], seen)
                if found:
                    return found
        return None

    return walk(target, [group.name], set())
