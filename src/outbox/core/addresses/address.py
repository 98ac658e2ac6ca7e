"""`Address`, one valid mailbox, and its forms: the header form and the envelope form.

An `Address` is valid by construction (the constructor runs the `validate` checks and
raises `InvalidAddress`). `formatted()` and `format_addresses` render the header form,
quoting a display name per RFC 5322 only when it needs it, so that `parse_addresses` reads
it back unchanged; `addr_spec` is the envelope form with the IDNA domain. Pure: no I/O.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from outbox.core.addresses.validate import (
    ATEXT,
    Problem,
    check_display_name,
    checked_ascii_domain,
    show,
)
from outbox.errors import InvalidAddress

__all__ = ["Address", "format_addresses", "mailbox_key", "quote_phrase"]

_ATEXT: Final = frozenset(ATEXT)


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox, valid by construction (the constructor raises `InvalidAddress`).

    `domain` is kept as given, for display; `ascii_domain` is its lowercase IDNA (punycode)
    form, used on the wire. Equality compares the given fields; `dedupe_key` says whether two
    addresses are the same mailbox.
    """

    display_name: str
    local: str
    domain: str
    ascii_domain: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            check_display_name(self.display_name)
            ascii_domain = checked_ascii_domain(self.local, self.domain)
        except Problem as problem:
            shown = show(f"{self.display_name} <{self.local}@{self.domain}>")
            raise InvalidAddress(f"{shown} {problem.reason}", hint=problem.hint) from None
        object.__setattr__(self, "ascii_domain", ascii_domain)

    @property
    def addr_spec(self) -> str:
        """``local@ascii-domain``: what goes in the envelope (MAIL FROM / RCPT TO)."""
        return f"{self.local}@{self.ascii_domain}"

    @property
    def needs_smtputf8(self) -> bool:
        """A non-ASCII local part can only be sent through a relay offering SMTPUTF8."""
        return not self.local.isascii()

    @property
    def dedupe_key(self) -> tuple[str, str]:
        """Same mailbox: `mailbox_key` of this address."""
        return mailbox_key(self.local, self.ascii_domain)

    def formatted(self) -> str:
        """The header form: ``"Doe, John" <j@xn--bcher-kva.test>``, or the bare addr-spec.

        The display name is quoted per RFC 5322 when it needs to be. A non-ASCII display name
        stays Unicode here: the MIME writer (``email.policy.SMTP``) RFC 2047-encodes it.
        """
        if not self.display_name:
            return self.addr_spec
        return f"{quote_phrase(self.display_name)} <{self.addr_spec}>"


def mailbox_key(local: str, domain: str) -> tuple[str, str]:
    """Whether two addresses are one mailbox: NFC, and case-insensitive in both parts.

    RFC 5321 lets a server treat the local part's case as significant, but no real
    mailbox system delivers Ann@ and ann@ to two people, and the address book already
    merges them as one contact: keeping both made one person get two copies. The
    domain is the IDNA form, lower-cased (a Unicode domain's key is its punycode)."""
    return unicodedata.normalize("NFC", local).lower(), domain.lower()


def format_addresses(addresses: Sequence[Address]) -> str:
    """A header value for a list of addresses; `parse_addresses` reads it back unchanged."""
    return ", ".join(address.formatted() for address in addresses)


def quote_phrase(name: str) -> str:
    """A display name as an RFC 5322 phrase: as is when its words are atoms, else quoted."""
    words = name.split(" ")
    if "=?" not in name and all(_is_atom(word) for word in words):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _is_atom(word: str) -> bool:
    return bool(word) and all(c in _ATEXT or (not c.isascii() and not c.isspace()) for c in word)
