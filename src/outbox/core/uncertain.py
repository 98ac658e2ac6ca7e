"""How many copies of a message the relay may already hold.

A try that ended after the final "." without a reply (or died in flight) leaves an
`uncertain` event: the relay probably took that copy. A retry sends again to every
recipient that is not `sent`, so before it Outbox counts the tries that may already
have reached those recipients and asks for confirmation when there are any.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Protocol

from outbox.core.model import Event, EventType, RecipientStatus
from outbox.errors import ConfirmationRequired

RETRY_CONFIRM = "retry with confirm=true (API) or --yes (CLI) if another copy is really wanted"


def uncertain_tries(events: Iterable[Event], resent_to: Collection[str]) -> int:
    """The tries with an `uncertain` event for the whole message or for a recipient a
    retry sends to again (one try has one event per recipient: counted once)."""
    tries: set[int | datetime] = {
        e.attempt if e.attempt is not None else e.at for e in events
        if e.type is EventType.UNCERTAIN and (e.recipient is None or e.recipient in resent_to)}
    return len(tries)


def retry_warning(id: str, tries: int) -> str:
    """The one line a retry that needs confirmation answers with."""
    return (f"message {id} probably reached the relay {tries} time(s) already: {tries} "
            "try(ies) ended after the message was sent, before the relay's reply; a retry "
            "sends another copy, so it needs confirming")


class Addressee(Protocol):
    @property
    def address(self) -> str: ...
    @property
    def status(self) -> RecipientStatus: ...


def confirm_retry(id: str, events: Iterable[Event], recipients: Iterable[Addressee],
                  confirm: bool) -> None:
    """`ConfirmationRequired` for an unconfirmed retry that may add a copy at the relay."""
    resent_to = {r.address for r in recipients if r.status is not RecipientStatus.SENT}
    tries = uncertain_tries(events, resent_to)
    if tries and not confirm:
        raise ConfirmationRequired(retry_warning(id, tries), hint=RETRY_CONFIRM)
