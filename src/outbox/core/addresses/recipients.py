"""Who sees what: To, Cc and Bcc parsed into one de-duplicated `RecipientPlan`.

`plan_recipients(to, cc, bcc)` returns the header lists (To, Cc; Bcc never appears in a
header) and the envelope, one `EnvelopeRecipient` per mailbox (`Address.dedupe_key`), the first
occurrence winning in the order to > cc > bcc. It raises `InvalidAddress` for the first
bad address or when there is no recipient at all.

`plan_envelope(to, cc, envelope)` is the same for a message whose envelope was given apart
from its headers (SMTP submission): the envelope is exactly `envelope`, each recipient a
To or Cc recipient when its header names it, else a Bcc one; a header address that is not
in the envelope stays in its header and receives nothing. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from outbox.core.addresses.address import Address
from outbox.core.addresses.parse import parse_addresses
from outbox.errors import InvalidAddress

__all__ = ["EnvelopeRecipient", "RecipientKind", "RecipientPlan", "plan_envelope",
           "plan_recipients"]


class RecipientKind(StrEnum):
    TO = "to"
    CC = "cc"
    BCC = "bcc"


@dataclass(frozen=True, slots=True)
class EnvelopeRecipient:
    """One envelope recipient and the field it first appeared in."""

    address: Address
    kind: RecipientKind


@dataclass(frozen=True, slots=True)
class RecipientPlan:
    """Who sees what. `to` and `cc` are the header lists; Bcc never appears in a header.

    `envelope` is the union of To, Cc and Bcc, one entry per mailbox, in that order; the first
    occurrence wins (to > cc > bcc) and a later duplicate is dropped from its header list too.
    From `plan_envelope`, `envelope` is the given one and the header lists are as written.
    """

    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    envelope: tuple[EnvelopeRecipient, ...]

    @property
    def bcc(self) -> tuple[Address, ...]:
        return tuple(r.address for r in self.envelope if r.kind is RecipientKind.BCC)

    @property
    def needs_smtputf8(self) -> bool:
        return any(r.address.needs_smtputf8 for r in self.envelope)


def plan_recipients(
    to: str | Sequence[str] | None = None,
    cc: str | Sequence[str] | None = None,
    bcc: str | Sequence[str] | None = None,
    *,
    allow_smtputf8: bool = False,
) -> RecipientPlan:
    """Parse, validate and de-duplicate To, Cc and Bcc in one call.

    Raises `InvalidAddress` for the first bad address (fields ``to``, ``cc``, ``bcc``), or
    when there is no recipient at all.
    """
    fields = ((RecipientKind.TO, to), (RecipientKind.CC, cc), (RecipientKind.BCC, bcc))
    seen: set[tuple[str, str]] = set()
    envelope: list[EnvelopeRecipient] = []
    for kind, value in fields:
        for address in parse_addresses(value, kind.value, allow_smtputf8=allow_smtputf8):
            if address.dedupe_key not in seen:
                seen.add(address.dedupe_key)
                envelope.append(EnvelopeRecipient(address, kind))
    if not envelope:
        raise InvalidAddress("to: a message needs at least one recipient in to, cc or bcc",
                             field="to")
    return RecipientPlan(
        to=tuple(r.address for r in envelope if r.kind is RecipientKind.TO),
        cc=tuple(r.address for r in envelope if r.kind is RecipientKind.CC),
        envelope=tuple(envelope),
    )


def plan_envelope(
    to: str | Sequence[str] | None,
    cc: str | Sequence[str] | None,
    envelope: Sequence[str],
    *,
    allow_smtputf8: bool = False,
    field: str = "envelope",
) -> RecipientPlan:
    """The plan of a message whose envelope is given (`envelope`, named `field` in
    errors) besides its To and Cc headers. Raises `InvalidAddress` like `plan_recipients`."""
    seen: set[tuple[str, str]] = set()
    header: dict[RecipientKind, list[Address]] = {}
    for kind, value in ((RecipientKind.TO, to), (RecipientKind.CC, cc)):
        parsed = parse_addresses(value, kind.value, allow_smtputf8=allow_smtputf8)
        header[kind] = _first_occurrences(parsed, seen)
    kinds = {a.dedupe_key: kind for kind, found in header.items() for a in found}
    given = parse_addresses(list(envelope), field, allow_smtputf8=allow_smtputf8)
    recipients = tuple(EnvelopeRecipient(a, kinds.get(a.dedupe_key, RecipientKind.BCC))
                       for a in _first_occurrences(given, set()))
    if not recipients:
        raise InvalidAddress(f"{field}: a message needs at least one recipient",
                             field=field)
    return RecipientPlan(to=tuple(header[RecipientKind.TO]), cc=tuple(header[RecipientKind.CC]),
                         envelope=recipients)


def _first_occurrences(found: Sequence[Address], seen: set[tuple[str, str]]) -> list[Address]:
    """`found` without the mailboxes in `seen` or repeated (`seen` is updated)."""
    kept = []
    for address in found:
        if address.dedupe_key not in seen:
            seen.add(address.dedupe_key)
            kept.append(address)
    return kept
