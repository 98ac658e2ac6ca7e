"""The parser: address-list values in, `Address` values or `InvalidAddress` errors out.

- `parse_addresses(value, field)`: every address of one string or a list of strings, in
  order; raises for the first bad entry;
- `address_errors(value, field)`: one error per bad entry, for forms that show them all;
- `parse_mailbox(value, field)`: exactly one address (``from``, ``reply_to``);
- `split_entries(text)`: the text of each entry, unvalidated, for name expansion.

This module turns an entry's ``(display name, addr-spec)`` into an `Address`, applies the
SMTPUTF8 policy (``allow_smtputf8``), and names each error's field as a JSON path:
``to[2]`` is element 2 of a list, or the third address of a single string; a single
mailbox has no index. A broken quote or bracket ends the scan of its string. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Final

from outbox.core.addresses.address import Address
from outbox.core.addresses.entries import Entry, Splitter, entries, split_mailbox
from outbox.core.addresses.validate import (
    SYNTAX_HINT,
    Problem,
    check_display_name,
    checked_ascii_domain,
    show,
)
from outbox.errors import InvalidAddress

__all__ = ["address_errors", "parse_addresses", "parse_mailbox", "split_entries"]

# Where the caller does not allow it: Outbox's submit paths all refuse such an address,
# whatever the relay offers (a stranger pass was told to find "a relay that supports
# SMTPUTF8" when the relay did, and no setting changes it).
_SMTPUTF8: Final = (
    "has non-ASCII characters before the @, which Outbox does not send (SMTPUTF8 "
    "addresses are not supported)"
)
_SMTPUTF8_HINT: Final = ("use an ASCII address for this mailbox; a non-ASCII domain alone "
                         "is fine (sent as xn--)")


def parse_addresses(
    value: str | Sequence[str] | None, field: str, *, allow_smtputf8: bool = False
) -> list[Address]:
    """Every address in `value` (one string, or a list of strings), in order.

    Raises `InvalidAddress` for the first bad entry, with `field` like ``to[2]``.
    """
    addresses: list[Address] = []
    for result in _results(value, field, allow_smtputf8):
        if isinstance(result, InvalidAddress):
            raise result
        addresses.append(result)
    return addresses


def address_errors(
    value: str | Sequence[str] | None, field: str, *, allow_smtputf8: bool = False
) -> list[InvalidAddress]:
    """One error per bad entry (a broken quote or bracket ends the scan of its string)."""
    return [r for r in _results(value, field, allow_smtputf8) if isinstance(r, InvalidAddress)]


def parse_mailbox(value: str, field: str, *, allow_smtputf8: bool = False) -> Address:
    """Exactly one address (for ``from`` and ``reply_to``), else `InvalidAddress`."""
    if not isinstance(value, str):
        raise InvalidAddress(f"{field}: expected one address as a string", field=field)
    addresses: list[Address] = []
    for result in _parse_text(value, lambda _index: field, allow_smtputf8):
        if isinstance(result, InvalidAddress):
            raise result
        addresses.append(result)
    if len(addresses) != 1:
        found = f"found {len(addresses)}" if addresses else "found none"
        raise InvalidAddress(f"{field}: {show(value)} must be exactly one address, {found}",
                             field=field, hint=SYNTAX_HINT)
    return addresses[0]


def split_entries(text: str) -> list[str] | None:
    """The text of each non-empty entry of one string, as `parse_addresses` cuts it
    (separators outside quotes, brackets and comments; a group gives its members),
    without validating any; None when the string does not split cleanly (then
    `parse_addresses` says why). Used to find names to expand (`core.expand`)."""
    if _PLAIN.fullmatch(text):
        return [text]
    return _split_entries(text)


def _split_entries(text: str) -> list[str] | None:
    splitter = Splitter()
    try:
        return [text[e.start : e.end].strip() for e in entries(text, splitter) if e.significant]
    except Problem:
        return None


def _results(
    value: str | Sequence[str] | None, field: str, allow_smtputf8: bool
) -> Iterator[Address | InvalidAddress]:
    if value is None:
        return
    if isinstance(value, str):
        yield from _parse_text(value, lambda index: f"{field}[{index}]", allow_smtputf8)
        return
    if not isinstance(value, list | tuple):
        yield InvalidAddress(f"{field}: expected a string or a list of strings", field=field)
        return
    for position, element in enumerate(value):
        label = f"{field}[{position}]"
        if not isinstance(element, str):
            yield InvalidAddress(f"{label}: expected a string", field=label)
            continue
        yield from _parse_text(element, _same_label(label), allow_smtputf8)


def _same_label(label: str) -> Callable[[int], str]:
    """Every entry of one list element is named by the element: ``to[3]``."""
    return lambda _index: label


def _parse_text(
    text: str, label: Callable[[int], str], allow_smtputf8: bool
) -> Iterator[Address | InvalidAddress]:
    """Addresses of one string, or an error per bad entry. `label(i)` names entry i's field."""
    if _PLAIN.fullmatch(text):
        # A bare addr-spec (the common case, a thousand to a message): nothing for the
        # tokenizer to find, and it would cost several times the checks themselves.
        try:
            yield _plain_address(text, allow_smtputf8)
        except Problem as problem:
            yield _error(label(0), text, problem)
        return
    yield from _parse_entries(text, label, allow_smtputf8)


# Characters that never start a token of their own: no space, quote, bracket, comment,
# separator or group, so the whole string is one entry, its addr-spec.
_PLAIN: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


def _parse_entries(
    text: str, label: Callable[[int], str], allow_smtputf8: bool
) -> Iterator[Address | InvalidAddress]:
    splitter = Splitter()
    index = 0
    try:
        for entry in entries(text, splitter):
            if entry.significant:
                yield _entry_result(text, entry, label(index), allow_smtputf8)
                index += 1
    except Problem as problem:
        yield _error(label(index), text[splitter.start :], problem)


def _entry_result(
    text: str, entry: Entry, label: str, allow_smtputf8: bool
) -> Address | InvalidAddress:
    try:
        display_name, addr = split_mailbox(entry)
        return _address_from(display_name, addr, allow_smtputf8)
    except Problem as problem:
        return _error(label, text[entry.start : entry.end], problem)


@lru_cache(maxsize=4096)
def _plain_address(addr: str, allow_smtputf8: bool) -> Address:
    """A bare addr-spec's `Address` (immutable, so shared): a message's recipients are
    parsed once in chunks (`service.pacing`) and again by `plan_message`, and the
    second pass, in one turn of the event loop, finds them here. Refusals are not kept."""
    return _address_from("", addr, allow_smtputf8)


def _address_from(display_name: str, addr: str, allow_smtputf8: bool) -> Address:
    if not addr:
        raise Problem("has an empty <>")
    if addr.startswith('"'):
        raise Problem("has a quoted local part, which Outbox does not support")
    if "@" not in addr:
        raise Problem("is not an email address (it has no @)")
    if addr.count("@") > 1:
        raise Problem("has more than one @")
    local, domain = addr.split("@")
    # Checked before constructing, so the error names the entry's field and shows its text;
    # the constructor's own error knows neither.
    check_display_name(display_name)
    checked_ascii_domain(local, domain)
    if not allow_smtputf8 and not local.isascii():
        raise Problem(_SMTPUTF8, hint=_SMTPUTF8_HINT)
    return Address(display_name, local, domain)


def _error(label: str, shown: str, problem: Problem) -> InvalidAddress:
    return InvalidAddress(f"{label}: {show(shown)} {problem.reason}", field=label,
                          hint=problem.hint)
