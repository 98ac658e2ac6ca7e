"""Which bounces put an address on the suppression list, and how an address is
compared there. Pure.

A complaint always suppresses. A hard bounce suppresses when it says the address
itself is bad: an addressing status (5.1.x: no such user, no such domain, moved), a
disabled mailbox (5.2.1), a generic 5.0.0, or no status at all (a text bounce that
failed for good without a code). A hard bounce about the message or the sender
(mailbox full 5.2.2, too big 5.2.3, policy or spam 5.7.x, content 5.6.x, network
and routing 5.4.x, system 5.3.x, protocol 5.5.x) does not: the next message may get
through, and suppressing would punish the recipient for the sender's problem. A
soft bounce and an auto-reply never suppress.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from outbox.core.addresses import split_entries
from outbox.core.bounces.values import BouncedRecipient, BounceKind


class SuppressionReason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class Suppression:
    """An address Outbox refuses to send to, and why."""

    address: str  # as `suppression_key` gives it
    reason: SuppressionReason
    created_at: datetime
    detail: str = ""  # the bounce's status and words, or the operator's note
    source_message: str | None = None  # the message whose bounce or report added it
    expires_at: datetime | None = None  # None: until removed

    def is_active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


_BAD_ADDRESS = ("5.1.", "5.2.1", "5.2.0", "5.0.0")


def suppression_for(recipient: BouncedRecipient) -> SuppressionReason | None:
    """Why this bounce puts the address on the suppression list, or None."""
    if recipient.kind is BounceKind.COMPLAINT:
        return SuppressionReason.COMPLAINT
    if recipient.kind is not BounceKind.HARD:
        return None
    status = recipient.status
    if status is None or status.startswith(_BAD_ADDRESS):
        return SuppressionReason.HARD_BOUNCE
    return None


def suppression_key(address: str) -> str:
    """How addresses are compared on the list: trimmed and lower-cased whole (mail
    systems treat the local part case-insensitively in practice)."""
    return address.strip().lower()


def recipient_field(values: Mapping[str, str | Sequence[str] | None], address: str) -> str:
    """The JSON path (`to[1]`) of the entry that named `address` in a submission's
    recipient fields; the field alone when the address came from a group or alias."""
    wanted = re.compile(rf"(?<![\w.+-]){re.escape(address)}(?![\w.-])", re.IGNORECASE)
    first = ""
    for name in values:
        value = values.get(name)
        if not value:
            continue
        first = first or name
        entries = (split_entries(value) or [value]) if isinstance(value, str) else list(value)
        for index, entry in enumerate(entries):
            if wanted.search(entry):
                return f"{name}[{index}]"
    return first or "to"
