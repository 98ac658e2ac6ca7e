"""The composition root and the use cases every entry point calls.

The HTTP API, the web UI, the CLI and the SMTP submission handler all go
through `Outbox.submit / get / list / attempts / retry / cancel`, so the rules
(validation, idempotency, routing) live in one place.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import structlog

from outbox.addressbook.book import ContactBook
from outbox.blobs import BlobStore, open_blob_store
from outbox.clock import utcnow
from outbox.config import Settings
from outbox.core.compose import (
    FileInfo,
    Limits,
    PlannedMessage,
    Submission,
    attachment_fields,
    plan_message,
)
from outbox.core.expand import Expansion
from outbox.core.links import LinkPolicy
from outbox.core.model import EventType, MessageStatus, RecipientStatus
from outbox.core.routing import (
    INTERNAL_ROUTE_VIOLATION,
    InternalPolicy,
    Route,
    RoutingTable,
    default_relay_name,
    internal_violations,
)
from outbox.errors import ConfirmationRequired, Conflict, IdempotencyKeyReused
from outbox.files import AttachmentFiles, planned_uses
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
    Recipient,
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
                 clock: Callable[[], datetime] = utcnow, blobs: BlobStore | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.files = AttachmentFiles(settings, store, blobs or open_blob_store(settings, store),
                                     clock=clock)
        self.rng = random.Random()
        names = [relay.name for relay in settings.relays]
        self.routing = RoutingTable(tuple(Route(r.match, r.relay) for r in settings.routes),
                                    default_relay_name(names))
        self.limits = Limits(settings.limits.max_message_size,
                             settings.limits.max_attachment_size,
                             frozenset(e.lower() for e in settings.limits.blocked_extensions),
                             frozenset(e.lower() for e in settings.limits.allowed_extensions),
                             settings.limits.extension_policy)
        self.policy = InternalPolicy(tuple(settings.internal_domains),
                                     frozenset(r.name for r in settings.relays if r.internal))
        self.contacts = ContactBook(store, settings.ldap, clock=clock)

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True) -> Outbox:
        store = await open_store(settings.database.url)
        if migrate:
            await store.migrate()
        return cls(settings, store)

    async def close(self) -> None:
        await self.contacts.aclose()
        await self.store.close()

    async def submit(self, submission: Submission, *, owner: str = "cli",
                     idempotency_key: str | None = None, body_hash: str | None = None) -> Accepted:
        """Validate, plan and store a message durably; return it at once."""
        body_hash = body_hash or request_hash(_submission_body(submission))
        if idempotency_key:
            replay = await self._replay(owner, idempotency_key, body_hash)
            if replay is not None:
                return replay
        submission, expansion = await self.contacts.expand(submission)
        now = self.clock()
        found = await self.files.resolve(submission, owner, now)
        planned = self._plan(submission, now, found.infos, await self.files.links())
        if self.settings.delivery.dedupe_message_id and "Message-ID" in submission.headers:
            earlier = await self.store.find_by_message_id(owner, planned.message_id)
            if earlier is not None:
                return Accepted(earlier, replayed=True)
        await self.files.keep(found, now)  # base64 files become blobs, before the message
        claim = IdempotencyClaim(owner, idempotency_key, body_hash) if idempotency_key else None
        message, created = await self.store.enqueue(self._new_message(planned, submission, now,
                                                                      owner, claim, expansion))
        if not created:
            return self._check_replay(message, body_hash, claim)
        self.contacts.note_usage(r.address for r in planned.recipients)
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

    def _plan(self, submission: Submission, now: datetime, files: Sequence[FileInfo],
              links: LinkPolicy | None) -> PlannedMessage:
        return plan_message(submission, limits=self.limits, routing=self.routing,
                            known_relays=[r.name for r in self.settings.relays], now=now,
                            make_message_id=new_message_id, files=files, links=links)

    def _new_message(self, planned: PlannedMessage, submission: Submission, now: datetime,
                     owner: str, claim: IdempotencyClaim | None,
                     expansion: Expansion) -> NewMessage:
        recipients = [NewRecipient(r.address, r.kind, r.relay,
                                   expansion.provenance_of(r.address))
                      for r in planned.recipients]
        metadata = {**submission.metadata, "_owner": owner}
        hold = self._hold_if_internal_leaks(recipients, submission.relay)
        return NewMessage(id=new_message_key(), message_id=planned.message_id,
                          sender=planned.sender, recipients=recipients, content=planned.content,
                          accepted_at=now, metadata=metadata, idempotency=claim,
                          blobs=planned_uses(planned), **hold)

    def _hold_if_internal_leaks(self, recipients: Sequence[NewRecipient],
                                requested: str | None = None) -> dict[str, Any]:
        """Held, naming the rule, when an internal recipient would leave through a
        relay not flagged internal (also when the client asked for that relay)."""
        found = internal_violations([(r.address, r.relay) for r in recipients], self.policy,
                                    requested)
        if not found:
            return {}
        more = f" (and {len(found) - 1} more recipient(s))" if len(found) > 1 else ""
        log.warning("message held: internal recipient on a non-internal relay",
                    recipient=found[0].address, relay=found[0].relay, rule=found[0].pattern)
        return {"status": MessageStatus.HELD, "hold_reason": found[0].describe() + more,
                "hold_guidance": INTERNAL_ROUTE_VIOLATION}

    def _rerouted(self, recipients: Sequence[Recipient]) -> dict[str, str]:
        """For unsent recipients that break the internal policy: the relay the current
        routes give them, where that differs. `Conflict` if the policy still fails."""
        unsent = [r for r in recipients if r.status is not RecipientStatus.SENT]
        if not internal_violations([(r.address, r.relay) for r in unsent], self.policy):
            return {}
        moved = {r.address: relay for r in unsent
                 if (relay := self.routing.relay_for(r.address.rpartition("@")[2]))
                 and relay != r.relay}
        still = internal_violations([(r.address, moved.get(r.address, r.relay))
                                     for r in unsent], self.policy)
        if still:
            raise Conflict(f"not released: {still[0].describe()}",
                           hint="route the domain through a relay with internal = true in the "
                                "config and restart Outbox, or cancel the message")
        return moved

    async def get(self, id: str) -> MessageDetail:
        return await self.store.get(id)

    async def list_messages(self, status: MessageStatus | None = None, limit: int = 50,
                   cursor: str | None = None) -> Page:
        return await self.store.list(status, limit, cursor)

    async def attempts(self, id: str) -> list[Attempt]:
        await self.store.get(id)  # NotFound for an unknown id
        return await self.store.attempts(id)

    async def retry(self, id: str) -> Message:
        moved = self._rerouted((await self.store.get(id)).message.recipients)
        await self.store.reroute_recipients(id, moved)
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
        recipients = [NewRecipient(r.address, r.kind, r.relay, r.provenance)
                      for r in original.recipients]
        copy = NewMessage(
            id=new_message_key(), message_id=new_message_id(domain), sender=original.sender,
            recipients=recipients,
            content={**original.content, "date": format_datetime(now)}, accepted_at=now,
            metadata={**original.metadata, "_owner": owner}, resent_from=original.id,
            blobs=await self.files.uses_of(id, original.content),
            **self._hold_if_internal_leaks(recipients))
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
