"""The storage contract: domain verbs in, domain values out; callers never see rows.

Both backends (SQLite, PostgreSQL) implement `Store` and pass the same
contract suite (tests/contract). All times are timezone-aware UTC datetimes.

Claiming: a message is claimable when its `due_at` is set and <= now (status
`queued` or `deferred`). `claim_due` sets status `sending`, `claimed_by`
(the worker's owner id), a fresh `claim_token` and `lease_until`, and clears
`due_at`, all in the transaction that picks the rows (PostgreSQL
`FOR UPDATE SKIP LOCKED`; SQLite `BEGIN IMMEDIATE` + `UPDATE ... RETURNING`).
Recording an attempt is a compare-and-set on the claim token: a worker whose
lease was taken over gets `False` back and nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from outbox.core.model import Event, MessageStatus, RecipientStatus, RecipientUpdate

__all__ = ["Event", "RecipientUpdate"]


@dataclass(frozen=True, slots=True)
class NewRecipient:
    address: str
    kind: str  # "to" | "cc" | "bcc"
    relay: str
    provenance: str = ""  # how the address was resolved: "" (typed), "alias:x", "group:y"


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    owner: str  # the API key's name (keys are scoped per client)
    key: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    id: str
    message_id: str  # the Message-ID header value, with angle brackets
    sender: str
    recipients: Sequence[NewRecipient]
    content: dict[str, Any]  # JSON: subject, text, html, headers, attachments, date, ...
    accepted_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency: IdempotencyClaim | None = None
    status: MessageStatus = MessageStatus.QUEUED  # or HELD when a policy holds it at submit
    hold_reason: str = ""
    resent_from: str | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    kind: str
    relay: str
    status: RecipientStatus
    provenance: str = ""
    reply_code: int | None = None
    enhanced_code: str | None = None
    reply: str | None = None
    guidance: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    message_id: str
    status: MessageStatus
    sender: str
    content: dict[str, Any]
    metadata: dict[str, Any]
    attempts: int
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    held_seconds: float  # total time spent held; not counted against max_age
    hold_reason: str
    resent_from: str | None
    recipients: tuple[Recipient, ...]


@dataclass(frozen=True, slots=True)
class MessageDetail:
    message: Message
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Claim:
    """A message handed to one worker under a lease. `message.recipients` holds
    every recipient (the final ones too, which decide the message's final
    status); the worker tries only those not final."""

    message: Message
    owner: str
    token: str
    lease_until: datetime

    @property
    def attempt(self) -> int:
        """The number of the attempt this claim is for (1-based)."""
        return self.message.attempts + 1


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    started_at: datetime
    finished_at: datetime | None
    relay: str
    outcome: str
    transcript: str


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """Everything one finished attempt changes, persisted in one transaction
    if and only if `token` still holds the claim."""

    message_id: str  # Outbox's id, not the Message-ID header
    token: str
    number: int
    relay: str
    started_at: datetime
    finished_at: datetime
    outcome: str  # short label: sent | deferred | failed | held | uncertain | partially_sent
    transcript: str
    recipient_updates: Sequence[RecipientUpdate]
    status: MessageStatus  # the message's new status
    due_at: datetime | None  # next try, when status is queued/deferred
    events: Sequence[Event]
    count_attempt: bool = True  # False when the relay, not the message, failed (held)
    hold_reason: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    messages: tuple[Message, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    by_status: dict[str, int]
    oldest_pending_at: datetime | None  # oldest queued/deferred message's acceptance time


class Store(Protocol):
    """Every backend implements these verbs and nothing else is public."""

    async def migrate(self) -> None:
        """Create or upgrade the schema (Alembic); safe to call on every start."""

    async def close(self) -> None: ...

    async def enqueue(self, message: NewMessage) -> tuple[Message, bool]:
        """Insert the message, its recipients and a `queued` (or `held`) event,
        committed durably before returning. With `idempotency` set and the
        (owner, key) pair already used, insert nothing and return the existing
        message with False; the caller compares request hashes."""

    async def find_by_idempotency_key(self, owner: str, key: str) -> tuple[Message, str] | None:
        """The message and request hash stored for this key, if any."""

    async def find_by_message_id(self, owner: str, message_id: str) -> Message | None:
        """A message submitted by this owner with that Message-ID header."""

    async def claim_due(self, owner: str, now: datetime, lease_until: datetime,
                        limit: int) -> list[Claim]:
        """Claim up to `limit` due messages, oldest due first; add a
        `claimed` event to each."""

    async def renew_leases(self, owner: str, lease_until: datetime) -> int:
        """Extend the lease of every message this owner holds; returns how many."""

    async def record_attempts(self, records: Sequence[AttemptRecord]) -> list[bool]:
        """Persist each record whose token still holds its claim, all in one
        transaction; return, per record, whether it was accepted."""

    async def release_claims(self, owner: str, now: datetime) -> int:
        """Give back this owner's claims that no attempt was started for
        (graceful stop): back to `queued`, due now, with no uncertain event."""

    async def release_stale(self, now: datetime, hold: bool) -> list[str]:
        """Messages whose lease expired come back: `deferred` and due now
        (or `held` when `hold`), each with an `uncertain` event, since their
        DATA may have reached the relay. Returns their ids."""

    async def get(self, id: str) -> MessageDetail:
        """Raise `errors.NotFound` for an unknown id."""

    async def attempts(self, id: str) -> list[Attempt]: ...

    async def list(self, status: MessageStatus | None, limit: int,
                   cursor: str | None) -> Page:
        """Newest first; `cursor` is opaque and comes from a previous page."""

    async def cancel(self, id: str, now: datetime) -> Message:
        """Queued, deferred or held → cancelled (with event); otherwise
        `errors.Conflict`."""

    async def retry(self, id: str, now: datetime) -> Message:
        """Deferred, held, failed or partially sent → queued and due now; failed
        and deferred recipients back to pending; a `released` event for held
        mail. Otherwise `errors.Conflict`."""

    async def hold_relay(self, relay: str, now: datetime, reason: str, event: Event) -> int:
        """Hold every queued/deferred message with a pending recipient on this
        relay (an auth problem): status held, the event added to each."""

    async def release_relay(self, relay: str, now: datetime) -> int:
        """Release the held messages of this relay: queued, due now, `released` event."""

    async def append_event(self, id: str, event: Event) -> None: ...

    async def next_due_at(self) -> datetime | None:
        """The earliest `due_at`, so an idle worker knows how long to sleep."""

    async def stats(self) -> QueueStats: ...

    async def wait_for_new(self, timeout: float) -> None:
        """Return when a message may have become due (new enqueue, retry,
        release; from any process where the backend can tell) or after
        `timeout` seconds."""
