"""The storage contract of the suppression list and of bounces (store.base imports
these): `store.suppressions`."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from outbox.core.model import Event, RecipientStatus
from outbox.core.suppression import Suppression


@dataclass(frozen=True, slots=True)
class BounceRecord:
    """What a bounce changes, written in one transaction: the recipient's status and
    reply (`status` None: only the event, e.g. a soft bounce or a complaint), the
    event on the message's timeline, and the suppression it causes."""

    message_id: str  # Outbox's id of the bounced message
    recipient: str
    event: Event
    status: RecipientStatus | None = None
    reply_code: int | None = None
    enhanced_code: str | None = None
    reply: str | None = None
    guidance: str | None = None
    suppression: Suppression | None = None


class SuppressionStore(Protocol):
    """Addresses Outbox refuses to send to, and the bounces that put them there."""

    async def add_suppression(self, entry: Suppression) -> bool:
        """Put the address on the list, replacing its entry if it has one; True when
        it was not there (or only expired)."""

    async def remove_suppression(self, address: str) -> bool:
        """Take the address off the list; False when it was not on it."""

    async def list_suppressions(self, limit: int, after: str | None = None
                                ) -> tuple[Suppression, ...]:
        """Entries by address, those after `after` (a page's last address), expired
        ones too."""

    async def find_suppressed(self, addresses: Collection[str], now: datetime
                              ) -> dict[str, Suppression]:
        """The active entries of these addresses (keys as `suppression_key` gives)."""

    async def record_bounce(self, bounce: BounceRecord) -> bool:
        """Write the bounce (recipient, event and webhook deliveries, suppression) in
        one transaction; False, and nothing written, when the message has no such
        recipient (compared case-insensitively)."""
