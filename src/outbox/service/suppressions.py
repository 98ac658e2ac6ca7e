"""The suppression facet: the list's entries (API, CLI) and the check at submit.

A message to an address on the list is refused with `errors.Suppressed` (422, code
`suppressed`, `field` naming the recipient's entry, `to[1]`) when `[suppression]
on_submit = "refuse"` (the default); "allow" sends it anyway. Hard bounces and
complaints (`service.bounces`) and one-click unsubscribes add entries themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

import structlog

from outbox.clock import utcnow
from outbox.config import Settings
from outbox.core import addresses
from outbox.core.compose import Submission
from outbox.core.suppression import (
    Suppression,
    SuppressionReason,
    recipient_field,
    suppression_key,
)
from outbox.errors import NotFound, Suppressed
from outbox.store.base import Store

log = structlog.get_logger("outbox.suppressions")


def fields_naming_recipients(submission: Submission) -> dict[str, str | Sequence[str] | None]:
    """The fields of a submission that name recipients, for `refusal_of`."""
    return {"to": submission.to, "cc": submission.cc, "bcc": submission.bcc,
            submission.envelope_field: submission.envelope}


def refusal_of(found: Mapping[str, Suppression], recipients: Sequence[str],
               fields: Mapping[str, str | Sequence[str] | None]) -> Suppressed | None:
    """`Suppressed` naming the first of `recipients` with an entry in `found` (by
    `suppression_key`), with its field (`to[1]`); None when none has one."""
    for address in recipients:
        entry = found.get(suppression_key(address))
        if entry is not None:
            why = f"{entry.reason.value}: {entry.detail}" if entry.detail else (
                entry.reason.value)
            return Suppressed(f"{address} is on the suppression list ({why})",
                              field=recipient_field(fields, address))
    return None


class Suppressions:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock

    async def add(self, address: str, *, reason: SuppressionReason = SuppressionReason.MANUAL,
                  detail: str = "", source_message: str | None = None,
                  expires_in: timedelta | None = None) -> tuple[Suppression, bool]:
        """Put an address on the list (`InvalidAddress` for a bad one); True when new."""
        checked = addresses.parse_mailbox(address, "address").addr_spec
        now = self.clock()
        entry = Suppression(suppression_key(checked), reason, now, detail, source_message,
                            now + expires_in if expires_in else None)
        created = await self.store.suppressions.add_suppression(entry)
        log.info("address suppressed", address=entry.address, reason=reason.value,
                 source_message=source_message)
        return entry, created

    async def remove(self, address: str) -> None:
        """`NotFound` when the address is not on the list."""
        if not await self.store.suppressions.remove_suppression(address):
            raise NotFound(f"{address} is not on the suppression list")
        log.info("address unsuppressed", address=suppression_key(address))

    async def find(self, addresses_: Sequence[str]) -> dict[str, Suppression]:
        return await self.store.suppressions.find_suppressed(addresses_, self.clock())

    async def refuse_suppressed(self, recipients: Sequence[str],
                                fields: Mapping[str, str | Sequence[str] | None]) -> None:
        """`Suppressed` naming the first suppressed recipient, per `on_submit`."""
        if not self.refuses_on_submit or not recipients:
            return
        refusal = refusal_of(await self.find(recipients), recipients, fields)
        if refusal is not None:
            raise refusal

    @property
    def refuses_on_submit(self) -> bool:
        return self.settings.suppression.on_submit == "refuse"

    # `list` last: below it, the name shadows the builtin in annotations.
    async def list(self, limit: int = 100, after: str | None = None
                   ) -> tuple[Suppression, ...]:
        return await self.store.suppressions.list_suppressions(limit, after)
