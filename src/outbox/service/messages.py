"""The messages facet: the use cases every entry point calls for mail.

The HTTP API, web UI, CLI and SMTP submission handler all call `Messages.submit / get /
list / attempts / retry / cancel / resend`, so the rules (validation, idempotency,
routing, the internal-domain policy) live in one place."""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

import structlog

from outbox.clock import utcnow
from outbox.config import Settings
from outbox.core import addresses
from outbox.core.compose import (
    FileInfo,
    Limits,
    PlannedMessage,
    Submission,
    plan_message,
    recipient_fields,
)
from outbox.core.expand import Expansion
from outbox.core.limits import check_recipient_count
from outbox.core.links import LinkPolicy
from outbox.core.model import EventType, MessageStatus, RecipientStatus
from outbox.core.recovery import Recovery
from outbox.core.routing import InternalPolicy, RoutingTable
from outbox.core.uncertain import confirm_retry
from outbox.errors import (
    ConfirmationRequired,
    DatabaseUnavailable,
    IdempotencyKeyReused,
    InputError,
    OutboxError,
)
from outbox.ids import new_message_id, new_message_key
from outbox.service import message_ids
from outbox.service.contacts import ContactBook
from outbox.service.files import AttachmentFiles, planned_uses
from outbox.service.internal_routes import hold_if_internal_leaks, rerouted
from outbox.service.pacing import listed, portable, validate_in_chunks
from outbox.service.request_hash import request_hash, submission_body
from outbox.service.suppressions import Suppressions, fields_naming_recipients, refusal_of
from outbox.service.unsubscribe import Unsubscribes
from outbox.store.base import (
    ANY_MESSAGE,
    Attempt,
    Event,
    IdempotencyClaim,
    Message,
    MessageDetail,
    MessageFilter,
    NewMessage,
    NewRecipient,
    Page,
    QueueStats,
    RecipientsSuppressed,
    Store,
)
from outbox.turns import OffTheLoop

log = structlog.get_logger("outbox.service")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Submitted:
    message: Message
    replayed: bool  # True when an earlier submit with the same key is returned


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One message of `submit_many`, with its own idempotency key."""

    submission: Submission
    idempotency_key: str | None = None
    body_hash: str | None = None  # default, with a key: a digest of `submission`


@dataclass(frozen=True, slots=True)
class _Pending:
    new: NewMessage
    planned: PlannedMessage


class Messages:
    def __init__(self, settings: Settings, store: Store, *, files: AttachmentFiles,
                 contacts: ContactBook, routing: RoutingTable, limits: Limits,
                 policy: InternalPolicy, recovery: Recovery,
                 suppressions: Suppressions | None = None,
                 unsubscribes: Unsubscribes | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.suppressions = suppressions
        self.unsubscribes = unsubscribes
        self.recovery = recovery
        self.rng = random.Random()
        self.store = store
        self.files = files
        self.contacts = contacts
        self.routing = routing
        self.limits = limits
        self.policy = policy
        self.clock = clock
        self.planning = OffTheLoop(imports=("outbox.core.compose",))

    async def submit(self, submission: Submission, *, owner: str = "cli",
                     idempotency_key: str | None = None, body_hash: str | None = None,
                     dedupe: bool = True, key_is_message_id: bool = False) -> Submitted:
        """Validate, plan and store a message durably; return it at once.

        `dedupe`: a Message-ID this owner submitted before gives that message back
        ([delivery] dedupe_message_id). SMTP passes `key_is_message_id` instead: its key
        is the Message-ID and envelope (one message per transaction), found taken by the
        insert (replays are rare), then decided as dedupe decides: replay or refusal."""
        item = BatchItem(submission, idempotency_key, body_hash)
        # The suppression list is read in the transaction that stores the message: one
        # trip to the database fewer, and no entry added in between slips by.
        prepared = await self._prepare(item, owner, dedupe, {} if key_is_message_id else None,
                                       suppressions_when_stored=True)
        if isinstance(prepared, Submitted):
            return prepared
        try:
            message, created = await self.store.messages.enqueue(prepared.new)
        except RecipientsSuppressed as refused:
            addresses_ = [r.address for r in prepared.planned.recipients]
            fields = fields_naming_recipients(submission)
            raise (refusal_of(refused.found, addresses_, fields) or refused) from None
        if not created and key_is_message_id:
            return Submitted(message_ids.replayed(message, prepared.planned), replayed=True)
        return await self._stored(prepared, message, created)

    async def submit_many(self, items: Sequence[BatchItem], *,
                          owner: str = "cli") -> list[Submitted | InputError]:
        """Each item as `submit` takes it, results in order; the new messages are
        committed together. An item's `InputError` is its result: the others go on."""
        keys = [item.idempotency_key for item in items if item.idempotency_key]
        known = await self.store.messages.find_by_idempotency_keys(owner, keys)
        prepared = [await self._refused_or(self._prepare(item, owner, True, known))
                    for item in items]
        pending = [p for p in prepared if isinstance(p, _Pending)]
        stored = iter(await self.store.messages.enqueue_many([p.new for p in pending]))
        return [await self._refused_or(self._stored(item, *next(stored)))
                if isinstance(item, _Pending) else item for item in prepared]

    async def check_recipient(self, address: str) -> str:
        """One envelope recipient checked as `submit` will check it (syntax, a relay
        that carries its domain): its envelope form, else `InputError`."""
        parsed = addresses.parse_mailbox(address, "recipient")
        if self.routing.relay_for(parsed.ascii_domain) is None:
            raise InputError("no relay is configured to carry this message; add a "
                             "[[relays]] section to the config", field="relay")
        return parsed.addr_spec

    @staticmethod
    async def _refused_or(step: Awaitable[T]) -> T | InputError:
        try:
            return await step
        except InputError as exc:
            return exc

    async def _prepare(self, item: BatchItem, owner: str, dedupe: bool,
                       known: Mapping[str, tuple[Message, str]] | None = None, *,
                       suppressions_when_stored: bool = False) -> _Pending | Submitted:
        """Everything before the commit: an earlier message this is a replay of, or the
        new message to store. `known`: the keys already looked up ({}: the insert does).
        `suppressions_when_stored`: the store checks the suppression list as it
        inserts (`RecipientsSuppressed`), not this method beforehand."""
        submission, key = item.submission, item.idempotency_key
        body_hash = (item.body_hash or request_hash(submission_body(submission))) if key else ""
        if key:  # only a key compares the hash
            stored = known.get(key) if known is not None else (
                await self.store.messages.find_by_idempotency_key(owner, key))
            replay = _replay_of(stored, body_hash)
            if replay is not None:
                return replay
        # Counted before anything expands or parses: a list far over the limit costs nothing.
        check_recipient_count(recipient_fields(submission), self.limits.max_recipients)
        submission, expansion = await self.contacts.expand(submission)
        size, light = len(listed(submission)), portable(submission)
        if not self.planning.in_a_process(size, portable=light):
            await validate_in_chunks(submission)  # the planning process parses its own
        now = self.clock()
        found = await self.files.resolve(submission, owner, now)
        links = await self.files.links()
        planned = await self.planning.run(size, self._plan(submission, now, found.infos, links),
                                          portable=light)
        if self.suppressions is not None and not suppressions_when_stored:
            await self.suppressions.refuse_suppressed([r.address for r in planned.recipients],
                                                      fields_naming_recipients(item.submission))
        id = new_message_key()
        if submission.list_unsubscribe:
            submission = await self._with_unsubscribe(submission, planned, id)
            planned = await self.planning.run(
                size, self._plan(submission, now, found.infos, await self.files.links()),
                portable=light)
        if (dedupe and self.settings.delivery.dedupe_message_id
                and message_ids.gives_message_id(submission.headers)):
            earlier = await self.store.messages.find_by_message_id(owner, planned.message_id)
            if earlier is not None:
                return Submitted(message_ids.replayed(earlier, planned), replayed=True)
        await self.files.keep(found, now)  # base64 files become blobs, before the message
        claim = IdempotencyClaim(owner, key, body_hash) if key else None
        new = self._new_message(planned, submission, now, owner, claim, expansion, id)
        if (suppressions_when_stored and self.suppressions is not None
                and self.suppressions.refuses_on_submit):
            new = replace(new, refuse_suppressed=True)
        return _Pending(new, planned)

    async def _with_unsubscribe(self, submission: Submission, planned: PlannedMessage,
                                id: str) -> Submission:
        """The submission with its one-click unsubscribe headers (one recipient only)."""
        if self.unsubscribes is None or len(planned.recipients) != 1:
            raise InputError("list_unsubscribe needs exactly one recipient (the link names "
                             "who unsubscribes): send one message per recipient",
                             field="list_unsubscribe")
        headers = await self.unsubscribes.headers_for(id, planned.recipients[0].address)
        return replace(submission, headers={**submission.headers, **headers})

    async def _stored(self, pending: _Pending, message: Message, created: bool) -> Submitted:
        claim = pending.new.idempotency
        if not created:  # the key was taken meanwhile: a replay if the bodies match
            replay = claim and await self._replay(claim.owner, claim.key, claim.request_hash)
            return replay or Submitted(message, replayed=True)
        planned = pending.planned
        self.contacts.note_usage(r.address for r in planned.recipients)
        log.info("message accepted", message=message.id, message_id=message.message_id,
                 recipients=len(planned.recipients), size=planned.size, owner=message.owner)
        return Submitted(message, replayed=False)

    async def _replay(self, owner: str, key: str, body_hash: str) -> Submitted | None:
        found = await self.store.messages.find_by_idempotency_key(owner, key)
        return _replay_of(found, body_hash)

    def _plan(self, submission: Submission, now: datetime, files: Sequence[FileInfo],
              links: LinkPolicy | None) -> Callable[[], PlannedMessage]:
        """The planning as one picklable call, for `OffTheLoop.run`."""
        return functools.partial(
            plan_message, submission, limits=self.limits, routing=self.routing,
            known_relays=[r.name for r in self.settings.relays], now=now,
            make_message_id=new_message_id, files=files, links=links)

    def _new_message(self, planned: PlannedMessage, submission: Submission, now: datetime,
                     owner: str, claim: IdempotencyClaim | None,
                     expansion: Expansion, id: str) -> NewMessage:
        recipients = [NewRecipient(r.address, r.kind, r.relay,
                                   expansion.provenance_of(r.address))
                      for r in planned.recipients]
        return NewMessage(id=id, message_id=planned.message_id,
                          sender=planned.sender, recipients=recipients, content=planned.content,
                          accepted_at=now, owner=owner, metadata=dict(submission.metadata),
                          idempotency=claim, blobs=planned_uses(planned),
                          hold=hold_if_internal_leaks(recipients, self.policy,
                                                         submission.relay))

    async def get(self, id: str) -> MessageDetail:
        """The message, its events, and whether its claim's owner (if any) is alive."""
        detail = await self.store.messages.get(id)
        claim = detail.message.claim
        if claim is None:
            return detail
        try:
            dead = await self.store.liveness.dead([claim.owner])
        except OutboxError:
            return detail  # cannot tell: owner_alive stays None
        gone = claim.owner in dead
        return replace(detail, owner_alive=not gone, recovered_within=(
            self.settings.delivery.sweep_interval if gone else None))

    async def get_after_change(self, changed: Message) -> MessageDetail:
        """`get`, for the answer to a retry or cancel (`changed`: the message as its
        committed write left it). A database lost before the read-back answers `changed`
        without its events: the change is done, and a 503 saying nothing was stored would
        send the operator to do it again (found by a stranger pass)."""
        try:
            return await self.get(changed.id)
        except DatabaseUnavailable as exc:
            log.warning("message not read back after a change; answered as the change "
                        "left it", message=changed.id, status=changed.status.value,
                        error=exc.one_line())
            return MessageDetail(changed, ())

    async def attempts(self, id: str) -> list[Attempt]:
        await self.store.messages.get(id)  # NotFound for an unknown id
        return await self.store.messages.attempts(id)

    async def retry(self, id: str, *, confirm: bool = False) -> Message:
        """Queue again now (also releases held mail); `confirm`: see `confirm_retry`."""
        await self._recover_if_abandoned(id)
        detail = await self.store.messages.get(id)
        confirm_retry(id, detail.events, detail.message.recipients, confirm)
        moved = rerouted(detail.message.recipients, self.policy, self.routing)
        message = await self.store.messages.retry(id, self.clock(), reroute=moved)
        log.info("message released for retry", message=id, confirmed=confirm)
        return message

    async def cancel(self, id: str) -> Message:
        await self._recover_if_abandoned(id)
        message = await self.store.messages.cancel(id, self.clock())
        log.info("message cancelled", message=id)
        return message

    async def _recover_if_abandoned(self, id: str) -> None:
        """Operators can always act: a dead owner's (or lapsed) claim is swept first."""
        claim = (await self.store.messages.get(id)).message.claim
        if claim is None:
            return
        now = self.clock()
        dead = await self.store.liveness.dead([claim.owner])
        if dead or claim.lease_until < now:
            await self.store.messages.recover_stale(
                now, lambda abandoned: self.recovery.decide(abandoned, now, self.rng), dead)

    async def resend(self, id: str, *, confirm: bool = False, owner: str = "cli",
                     idempotency_key: str | None = None) -> Submitted:
        """A new message with the same content and recipients and a new Message-ID,
        linked to the original; history is never rewritten. Resending mail that
        already reached someone needs `confirm`. An idempotency key makes a repeated
        request give back the copy it made (the same key on another request: 422)."""
        body_hash = request_hash({"resend": id, "confirm": confirm})
        if idempotency_key:
            replay = await self._replay(owner, idempotency_key, body_hash)
            if replay is not None:
                return replay
        original = (await self.store.messages.get(id)).message
        delivered = [r.address for r in original.recipients if r.status is RecipientStatus.SENT]
        if delivered and not confirm:
            raise ConfirmationRequired(f"message {id} was already delivered to "
                                       f"{len(delivered)} recipient(s); a resend sends again")
        now = self.clock()
        claim = IdempotencyClaim(owner, idempotency_key, body_hash) if idempotency_key else None
        message, created = await self.store.messages.enqueue(
            await self._copy_of(original, now, owner, claim))
        if not created:  # the same key, taken meanwhile by a concurrent request
            return await self._replay(owner, idempotency_key or "", body_hash) or Submitted(
                message, replayed=True)
        await self.store.messages.append_event(id, Event(now, EventType.RESENT,
                                                         detail=f"resent as {message.id}"))
        log.info("message resent", message=message.id, resent_from=id, confirmed=confirm)
        return Submitted(message, replayed=False)

    async def _copy_of(self, original: Message, now: datetime, owner: str,
                       claim: IdempotencyClaim | None) -> NewMessage:
        domain = original.sender.rpartition("@")[2] or "outbox.invalid"
        recipients = [NewRecipient(r.address, r.kind, r.relay, r.provenance)
                      for r in original.recipients]
        return NewMessage(
            id=new_message_key(), message_id=new_message_id(domain), sender=original.sender,
            recipients=recipients, content=original.content.with_date(now), accepted_at=now,
            owner=owner, metadata=dict(original.metadata), resent_from=original.id,
            blobs=await self.files.uses_of(original.id, original.content),
            hold=hold_if_internal_leaks(recipients, self.policy), idempotency=claim)

    async def stats(self) -> QueueStats:
        return await self.store.messages.stats()

    # `list` last: below it, the name shadows the builtin in annotations.
    async def list(self, status: MessageStatus | None = None, limit: int = 50,
                   cursor: str | None = None, where: MessageFilter = ANY_MESSAGE) -> Page:
        return await self.store.messages.list(status, limit, cursor, where)


def _replay_of(found: tuple[Message, str] | None, body_hash: str) -> Submitted | None:
    """The earlier message of an idempotency key, if the request is the same."""
    if found is None:
        return None
    message, stored_hash = found
    if stored_hash != body_hash:
        raise IdempotencyKeyReused(field="Idempotency-Key")
    return Submitted(message, replayed=True)
