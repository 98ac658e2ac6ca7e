"""Builders for the contract tests: messages, claims' results, fixed times."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

from outbox.core.content import AttachmentRef, LinkRef, MessageContent
from outbox.core.model import (
    Event,
    EventType,
    Hold,
    MessageStatus,
    RecipientStatus,
    RecipientUpdate,
)
from outbox.core.recovery import Recovery
from outbox.core.retry import RetryPolicy
from outbox.store.base import (
    AttemptRecord,
    Claim,
    IdempotencyClaim,
    NewMessage,
    NewRecipient,
    Store,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HELD = Hold("held at submit by a test")
SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
# Every kind of content: headers in order, a file, an inline image, a linked file.
TODAY_CONTENT = MessageContent(
    from_="Shop <shop@x.test>", to=("Ann <ann@x.test>", "bob@x.test"), cc=("carl@x.test",),
    reply_to=("help@x.test",), subject="Grüße ✓", text="Hello",
    html='<p><img src="cid:logo@x"></p>', headers=(("X-B", "2"), ("X-A", "1")),
    date="Tue, 01 Jan 2030 12:00:00 +0000",
    attachments=(
        AttachmentRef("a.txt", "text/plain", SHA_A, 5),
        AttachmentRef("logo.png", "image/png", SHA_B, 208, content_id="logo@x"),
        AttachmentRef("big.bin", "application/octet-stream", SHA_C, 3000,
                      link=LinkRef("http://127.0.0.1:8025/d/TOKEN",
                                   datetime.fromisoformat("2030-01-08T12:00:00+00:00"))),
    ),
)
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
    hold: Hold | None = None,
    owner: str = "app",
) -> NewMessage:
    n = next(_ids)
    id = id or f"msg{n:06d}"
    return NewMessage(
        id=id,
        message_id=f"<{id}@outbox.test>",
        sender="sender@example.com",
        recipients=[NewRecipient(address, "to", relay) for address in to],
        content=MessageContent(from_="sender@example.com", date="Tue, 01 Jan 2030 12:00:00 +0000",
                               subject=f"hello {n}", text="body", headers=(("X-N", str(n)),)),
        accepted_at=accepted_at,
        owner=owner,
        metadata={"n": n},
        idempotency=idempotency,
        hold=hold,
    )


async def enqueue_many(store: Store, count: int, start: datetime = T0,
                       **fields: object) -> list[str]:
    """`count` queued messages due one millisecond apart, oldest first."""
    batch = [new_message(accepted_at=start + timedelta(milliseconds=i), **fields)  # type: ignore[arg-type]
             for i in range(count)]
    for chunk in range(0, count, 50):
        await asyncio.gather(*(store.messages.enqueue(m) for m in batch[chunk:chunk + 50]))
    return [m.id for m in batch]


async def claim_until_empty(store: Store, owner: str, busy: Collection[str] = ()
                            ) -> list[str]:
    """The ids `owner` claims, 7 at a time at `at(60)`, until a claim finds none."""
    claimed: list[str] = []
    while claims := await store.messages.claim_due(owner, at(60), at(60) + LEASE, 7,
                                                   busy=busy):
        claimed += [c.message.id for c in claims]
    return claimed


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


RECOVERY = Recovery(RetryPolicy(max_attempts=20), "retry")


async def recover(store: Store, now: datetime, *, hold: bool = False,
                  dead: Sequence[str] = (), recovery: Recovery = RECOVERY) -> list[str]:
    """`recover_stale` with the production policy (held when `hold`)."""
    policy = Recovery(recovery.policy, "hold" if hold else recovery.on_uncertain)
    rng = random.Random(7)
    return await store.messages.recover_stale(
        now, lambda claim: policy.decide(claim, now, rng), dead)
