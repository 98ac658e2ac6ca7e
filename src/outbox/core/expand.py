"""Expand names in recipient fields into addresses, before a message is planned. Pure.

An entry with no ``@`` and no ``<...>`` is a name: an alias, a group or a
contact of the address book (compared by `contacts.name_key`). It is replaced
by its addresses; everything else is left for `addresses.plan_recipients` to
parse and validate as usual. A name that matches nothing, or more than one
thing (an alias and a group, two contacts), is refused with the field named:
Outbox never guesses who was meant.

Each address remembers how it was resolved (its provenance): ``""`` when it
was typed, ``alias:NAME``, ``contact:NAME``, or the chain of groups that
brought it in, like ``group:All staff > group:Ops > contact:Ann Lee``. Nested
groups are expanded depth-first; a group already being expanded (a cycle) is
skipped and reported in `Expansion.cycles`.

A string value with a name in it comes back as a list with one element per
entry, so an error still names the entry by its position (``to[2]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from outbox.core import addresses
from outbox.core.contacts import AddressBook, Contact, Group, MemberKind, name_key
from outbox.errors import InvalidAddress

TYPED = ""
Value = str | Sequence[str] | None
Piece = tuple[str, str]  # (address text, provenance)
_NAME_HINT = "write the address itself, or add the name to the address book"


@dataclass(frozen=True, slots=True)
class Expansion:
    to: Value
    cc: Value
    bcc: Value
    provenance: dict[tuple[str, str], str] = field(default_factory=dict)
    cycles: tuple[str, ...] = ()  # groups skipped because they contain themselves

    def provenance_of(self, addr_spec: str) -> str:
        """How an envelope address (``local@ascii-domain``) was resolved; "" if typed."""
        local, _, domain = addr_spec.rpartition("@")
        return self.provenance.get(addresses.mailbox_key(local, domain), TYPED)


def is_name(entry: str) -> bool:
    """An entry that cannot be an address: no @ and no angle brackets."""
    return "@" not in entry and "<" not in entry and ">" not in entry


def referenced_names(*values: Value) -> set[str]:
    """The name keys the address book must be asked about."""
    names: set[str] = set()
    for value in values:
        for text in _strings(value):
            names.update(name_key(_unquoted(e)) for e in addresses.split_entries(text) or ()
                         if is_name(e))
    names.discard("")
    return names


def expand_recipients(to: Value, cc: Value, bcc: Value, book: AddressBook) -> Expansion:
    """Replace every name in To, Cc and Bcc by its addresses; raise `InvalidAddress`
    for a name that matches nothing or more than one thing."""
    if not referenced_names(to, cc, bcc):
        return Expansion(to, cc, bcc)
    resolver = _Resolver(book)
    values: list[Value] = []
    pieces: list[Piece] = []
    for label, value in (("to", to), ("cc", cc), ("bcc", bcc)):
        expanded, found = _expand_value(value, label, resolver)
        values.append(expanded)
        pieces += found
    return Expansion(values[0], values[1], values[2], _provenance(pieces),
                     tuple(dict.fromkeys(resolver.cycles)))


def _strings(value: Value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _unquoted(entry: str) -> str:
    return entry[1:-1] if len(entry) >= 2 and entry[0] == entry[-1] == '"' else entry


def _expand_value(value: Value, label: str, resolver: _Resolver) -> tuple[Value, list[Piece]]:
    if isinstance(value, str):
        entries = addresses.split_entries(value)
        if entries is None or not any(is_name(e) for e in entries):
            return value, [(value, TYPED)]
        return _expand_list(entries, label, resolver)
    if isinstance(value, list | tuple):
        return _expand_list(value, label, resolver)
    return value, []


def _expand_list(value: Sequence[object], label: str,
                 resolver: _Resolver) -> tuple[list[str], list[Piece]]:
    """One output element per input element, with the names inside it expanded."""
    out: list[object] = []
    pieces: list[Piece] = []
    for index, element in enumerate(value):
        entries = addresses.split_entries(element) if isinstance(element, str) else None
        if entries is None or not any(is_name(e) for e in entries):
            out.append(element)  # a non-string is left for the parser to refuse
            pieces += [(element, TYPED)] if isinstance(element, str) else []
            continue
        found = [piece for e in entries for piece in resolver.expand(e, f"{label}[{index}]")]
        out.append(", ".join(text for text, _ in found))
        pieces += found
    return cast(list[str], out), pieces


def _provenance(pieces: list[Piece]) -> dict[tuple[str, str], str]:
    """First occurrence wins, as in `plan_recipients` (to, then cc, then bcc)."""
    result: dict[tuple[str, str], str] = {}
    for text, provenance in pieces:
        try:
            parsed = addresses.parse_addresses(text, "to")
        except InvalidAddress:
            continue  # planning reports it, naming the field
        for address in parsed:
            result.setdefault(address.dedupe_key, provenance)
    return result


class _Resolver:
    def __init__(self, book: AddressBook) -> None:
        self.book = book
        self.cycles: list[str] = []

    def expand(self, entry: str, label: str) -> list[Piece]:
        return self.resolve(entry, label) if is_name(entry) else [(entry, TYPED)]

    def resolve(self, entry: str, label: str) -> list[Piece]:
        shown = _unquoted(entry)
        key = name_key(shown)
        alias = self.book.aliases.get(key)
        group = self.book.groups.get(key)
        contacts = self.book.contacts_by_name.get(key, ())
        matches = (alias is not None) + (group is not None) + len(contacts)
        if matches == 0:
            raise InvalidAddress(f"{label}: {shown!r} is not an email address (it has no @), "
                                 "and no alias, group or contact has that name",
                                 field=label, hint=_NAME_HINT)
        if matches > 1:
            raise InvalidAddress(f"{label}: {shown!r} is ambiguous: it names "
                                 f"{_describe(alias is not None, group is not None, contacts)}",
                                 field=label, hint="write the address itself")
        if alias is not None:
            return [(target, f"alias:{alias.name}") for target in alias.targets]
        if group is not None:
            return self._group(group, "", ())
        return [(_contact_text(contacts[0]), f"contact:{contacts[0].name}")]

    def _group(self, group: Group, chain: str, path: tuple[str, ...]) -> list[Piece]:
        key = name_key(group.name)
        if key in path:
            self.cycles.append(group.name)
            return []
        here = f"{chain} > group:{group.name}" if chain else f"group:{group.name}"
        pieces: list[Piece] = []
        for member in group.members:
            if member.kind is MemberKind.ADDRESS:
                pieces.append((member.value, here))
            elif member.kind is MemberKind.CONTACT:
                contact = self.book.contacts_by_id.get(int(member.value))
                if contact is not None and contact.emails:
                    pieces.append((_contact_text(contact), f"{here} > contact:{contact.name}"))
            else:
                nested = self.book.groups.get(name_key(member.value))
                if nested is not None:
                    pieces += self._group(nested, here, (*path, key))
        return pieces


def _contact_text(contact: Contact) -> str:
    """The contact's first address, with its name as the display name when it fits."""
    email = contact.emails[0]
    local, _, domain = email.rpartition("@")
    try:
        return addresses.Address(contact.name, local, domain).formatted()
    except InvalidAddress:
        return email


def _describe(alias: bool, group: bool, contacts: Sequence[Contact]) -> str:
    parts = (["an alias"] if alias else []) + (["a group"] if group else [])
    if contacts:
        emails = ", ".join(c.emails[0] for c in contacts[:3] if c.emails)
        parts.append(f"{len(contacts)} contact(s) ({emails})")
    return " and ".join(parts)
