"""The composition root and the use cases every entry point calls.

The HTTP API, the web UI, the CLI and the SMTP submission handler all go
through `Outbox.submit / get / list / attempts / retry / cancel`, so the rules
(validation, idempotency, routing) live in one place.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import structlog

from outbox.clock import utcnow
from outbox.config import Settings
from outbox.core.compose import (
    Limits,
    PlannedMessage,
    Submission,
    attachment_fields,
    plan_message,
)
from outbox.core.model import EventType, MessageStatus, RecipientStatus
from outbox.core.routing import Route, RoutingTable, default_relay_name
from outbox.errors import ConfirmationRequired, IdempotencyKeyReused
from outbox.ids import new_message_id, new_message_key
from outbox.store.base import (
    Attempt,
    Event,
    IdempotencyClaim,
    Message,
    MessageDetail,
    NewMessage,
    NewRecipient,
    Page,
    QueueStats,
    Store,
)
from outbox.store.factory import open_store

log = structlog.get_logger("outbox.service")


@dataclass(frozen=True, slots=True)
class Accepted:
    message: Message
    replayed: bool  # True when an earlier submit with the same key is returned


def request_hash(body: Any) -> str:
    """A stable digest of a request body, for idempotency-key comparisons."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Outbox:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.rng = random.Random()
        names = [relay.name for relay in settings.relays]
        self.routing = RoutingTable(tuple(Route(r.match, r.relay) for r in settings.routes),
                                    default_relay_name(names))
        self.limits = Limits(settings.limits.max_message_size,
                             settings.limits.max_attachment_size,
                             frozenset(e.lower() for e in settings.limits.blocked_extensions))

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True) -> Outbox:
        store = await open_store(settings.database.url)
        if migrate:
            await store.migrate()
        return cls(settings, store)

    async def close(self) -> None:
        await self.store.close()

    async def submit(self, submission: Submission, *, owner: str = "cli",
                     idempotency_key: str | None = None, body_hash: str | None = None) -> Accepted:
        """Validate, plan and store a message durably; return it at once."""
        body_hash = body_hash or request_hash(_submission_body(submission))
        if idempotency_key:
            replay = await self._replay(owner, idempotency_key, body_hash)
            if replay is not None:
                return replay
        now = self.clock()
        planned = self._plan(submission, now)
        if self.settings.delivery.dedupe_message_id and "Message-ID" in submission.headers:
            earlier = await self.store.find_by_message_id(owner, planned.message_id)
            if earlier is not None:
                return Accepted(earlier, replayed=True)
        claim = IdempotencyClaim(owner, idempotency_key, body_hash) if idempotency_key else None
        message, created = await self.store.enqueue(self._new_message(planned, submission, now,
                                                                      owner, claim))
        if not created:
            return self._check_replay(message, body_hash, claim)
        log.info("message accepted", message=message.id, message_id=message.message_id,
                 recipients=len(planned.recipients), size=planned.size, owner=owner)
        return Accepted(message, replayed=False)

    async def _replay(self, owner: str, key: str, body_hash: str) -> Accepted | None:
        found = await self.store.find_by_idempotency_key(owner, key)
        if found is None:
            return None
        message, stored_hash = found
        if stored_hash != body_hash:
            raise IdempotencyKeyReused(field="Idempotency-Key")
        return Accepted(message, replayed=True)

    def _check_replay(self, message: Message, body_hash: str,
                      claim: IdempotencyClaim | None) -> Accepted:
        if claim is not None and claim.request_hash != body_hash:
            raise IdempotencyKeyReused(field="Idempotency-Key")
        return Accepted(message, replayed=True)

    def _plan(self, submission: Submission, now: datetime) -> PlannedMessage:
        return plan_message(submission, limits=self.limits, routing=self.routing,
                            known_relays=[r.name for r in self.settings.relays], now=now,
                            make_message_id=new_message_id)

    def _new_message(self, planned: PlannedMessage, submission: Submission, now: datetime,
                     owner: str, claim: IdempotencyClaim | None) -> NewMessage:
        recipients = [NewRecipient(r.address, r.kind, r.relay) for r in planned.recipients]
        metadata = {**submission.metadata, "_owner": owner}
        return NewMessage(id=new_message_key(), message_id=planned.message_id,
                          sender=planned.sender, recipients=recipients, content=planned.content,
                          accepted_at=now, metadata=metadata, idempotency=claim)

    async def get(self, id: str) -> MessageDetail:
        return await self.store.get(id)

    async def list_messages(self, status: MessageStatus | None = None, limit: int = 50,
                   cursor: str | None = None) -> Page:
        return await self.store.list(status, limit, cursor)

    async def attempts(self, id: str) -> list[Attempt]:
        await self.store.get(id)  # NotFound for an unknown id
        return await self.store.attempts(id)

    async def retry(self, id: str) -> Message:
        message = await self.store.retry(id, self.clock())
        log.info("message released for retry", message=id)
        return message

    async def cancel(self, id: str) -> Message:
        message = await self.store.cancel(id, self.clock())
        log.info("message cancelled", message=id)
        return message

    async def resend(self, id: str, *, confirm: bool = False, owner: str = "cli") -> Message:
        """A new message with the same content and recipients and a new Message-ID,
        linked to the original; history is never rewritten. Resending mail that
        already reached someone needs `confirm`."""
        original = (await self.store.get(id)).message
        delivered = [r.address for r in original.recipients if r.status is RecipientStatus.SENT]
        if delivered and not confirm:
            raise ConfirmationRequired(f"message {id} was already delivered to "
                                       f"{len(delivered)} recipient(s); a resend sends again")
        now = self.clock()
        domain = original.sender.rpartition("@")[2] or "outbox.invalid"
        copy = NewMessage(
            id=new_message_key(), message_id=new_message_id(domain), sender=original.sender,
            recipients=[NewRecipient(r.address, r.kind, r.relay, r.provenance)
                        for r in original.recipients],
            content={**original.content, "date": format_datetime(now)}, accepted_at=now,
            metadata={**original.metadata, "_owner": owner}, resent_from=original.id)
        message, _ = await self.store.enqueue(copy)
        await self.store.append_event(id, Event(now, EventType.RESENT,
                                                detail=f"resent as {message.id}"))
        log.info("message resent", message=message.id, resent_from=id, confirmed=confirm)
        return message

    async def stats(self) -> QueueStats:
        return await self.store.stats()

    async def note(self, id: str, event_type: EventType, detail: str) -> None:
        await self.store.append_event(id, Event(self.clock(), event_type, detail=detail))


def _submission_body(submission: Submission) -> dict[str, Any]:
    body = {name: getattr(submission, name) for name in submission.__slots__}
    body["attachments"] = [attachment_fields(a) for a in submission.attachments]
    return body
