"""Builders for the contract tests: messages, claims' results, fixed times."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from outbox.core.model import Event, EventType, MessageStatus, RecipientStatus, RecipientUpdate
from outbox.store.base import (
    AttemptRecord,
    Claim,
    IdempotencyClaim,
    NewMessage,
    NewRecipient,
    Store,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
_ids = itertools.count(1)


def at(seconds: float) -> datetime:
    """T0 plus `seconds`: tests never read the clock."""
    return T0 + timedelta(seconds=seconds)


def new_message(
    *,
    id: str | None = None,
    accepted_at: datetime = T0,
    to: Sequence[str] = ("alice@example.com",),
    relay: str = "default",
    idempotency: IdempotencyClaim | None = None,
    status: MessageStatus = MessageStatus.QUEUED,
    hold_reason: str = "",
    owner: str = "app",
) -> NewMessage:
    n = next(_ids)
    id = id or f"msg{n:06d}"
    return NewMessage(
        id=id,
        message_id=f"<{id}@outbox.test>",
        sender="sender@example.com",
        recipients=[NewRecipient(address, "to", relay) for address in to],
        content={"subject": f"hello {n}", "text": "body", "headers": {"X-N": str(n)}},
        accepted_at=accepted_at,
        metadata={"_owner": owner, "n": n},
        idempotency=idempotency,
        status=status,
        hold_reason=hold_reason,
    )


async def enqueue_many(store: Store, count: int, start: datetime = T0,
                       **fields: object) -> list[str]:
    """`count` queued messages due one millisecond apart, oldest first."""
    batch = [new_message(accepted_at=start + timedelta(milliseconds=i), **fields)  # type: ignore[arg-type]
             for i in range(count)]
    for chunk in range(0, count, 50):
        await asyncio.gather(*(store.enqueue(m) for m in batch[chunk:chunk + 50]))
    return [m.id for m in batch]


def finished(
    claim: Claim,
    status: MessageStatus,
    *,
    recipient_status: RecipientStatus | None = None,
    due_at: datetime | None = None,
    finished_at: datetime | None = None,
    count_attempt: bool = True,
    hold_reason: str = "",
    held_for_relay: bool = False,
    token: str | None = None,
    updates: Sequence[RecipientUpdate] | None = None,
) -> AttemptRecord:
    """The record of one attempt over every recipient of `claim`."""
    done = finished_at or claim.lease_until - LEASE + timedelta(seconds=1)
    if updates is None:
        rstatus = recipient_status or _RECIPIENT_STATUS[status]
        updates = [RecipientUpdate(r.address, rstatus, 250 if rstatus is RecipientStatus.SENT
                                   else 451, "2.0.0" if rstatus is RecipientStatus.SENT
                                   else "4.3.0", "reply text", "guidance.key")
                   for r in claim.message.recipients]
    events = [Event(done, EventType.ATTEMPT, claim.attempt, detail=status.value),
              *(Event(done, EventType.SENT if u.status is RecipientStatus.SENT
                      else EventType.DEFERRED, claim.attempt, recipient=u.address,
                      reply_code=u.reply_code) for u in updates)]
    return AttemptRecord(
        message_id=claim.message.id, token=token or claim.token, number=claim.attempt,
        relay="default", started_at=claim.lease_until - LEASE, finished_at=done,
        outcome=status.value, transcript="EHLO outbox\n250 ok", recipient_updates=updates,
        status=status, due_at=due_at, events=events, count_attempt=count_attempt,
        hold_reason=hold_reason, held_for_relay=held_for_relay,
    )


_RECIPIENT_STATUS = {
    MessageStatus.SENT: RecipientStatus.SENT,
    MessageStatus.FAILED: RecipientStatus.FAILED,
    MessageStatus.DEFERRED: RecipientStatus.DEFERRED,
    MessageStatus.HELD: RecipientStatus.PENDING,
    MessageStatus.QUEUED: RecipientStatus.PENDING,
}
