"""The store's values: what goes in and comes out of its verbs (`store.base`).

Frozen dataclasses and constants, no behaviour beyond a few derived
properties; the SQL side maps them to rows in `store.rows`. All times are
timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from outbox.core.content import MessageContent
from outbox.core.model import Event, Hold, MessageStatus, RecipientStatus, RecipientUpdate
from outbox.core.suppression import Suppression

__all__ = [
    "NEEDS_ATTENTION",
    "RELAY_OK",
    "Alert",
    "Attempt",
    "AttemptRecord",
    "BlobUse",
    "Claim",
    "ClaimInfo",
    "DatabaseInfo",
    "DeleteContent",
    "Event",
    "Hold",
    "IdempotencyClaim",
    "Message",
    "MessageDetail",
    "NewMessage",
    "NewRecipient",
    "Page",
    "QueueStats",
    "Recipient",
    "RecipientUpdate",
    "RecipientsSuppressed",
    "RelayAuth",
    "StoredApiKey",
    "Upload",
]


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
    content: MessageContent
    accepted_at: datetime
    owner: str | None = None  # who submitted it: an API key's name, "cli", ...
    metadata: dict[str, Any] = field(default_factory=dict)  # the client's, kept as given
    idempotency: IdempotencyClaim | None = None
    hold: Hold | None = None  # held at submit by a policy; else queued
    resent_from: str | None = None
    blobs: Sequence[BlobUse] = ()  # the stored files its attachments and links use
    # Not stored if a recipient is on the suppression list (`RecipientsSuppressed`):
    # checked in the transaction that stores it, so no entry added meanwhile slips by.
    refuse_suppressed: bool = False

    @property
    def status(self) -> MessageStatus:
        return MessageStatus.QUEUED if self.hold is None else MessageStatus.HELD


class RecipientsSuppressed(Exception):
    """Not stored: `found`, the suppression entries (by `suppression_key`) of recipients
    of a message with `refuse_suppressed`. The service turns it into `errors.Suppressed`."""

    def __init__(self, found: Mapping[str, Suppression]) -> None:
        super().__init__(f"{len(found)} recipient(s) on the suppression list")
        self.found = dict(found)


@dataclass(frozen=True, slots=True)
class BlobUse:
    """A message uses a blob; a download link to it must work until `keep_until`."""

    sha256: str
    keep_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Upload:
    """Content uploaded with POST /v1/uploads, usable by its owner until it expires."""

    id: str
    owner: str
    sha256: str
    size: int
    created_at: datetime
    expires_at: datetime


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
class ClaimInfo:
    """Who holds a message in `sending`, since when, and until when its lease runs."""

    owner: str
    since: datetime
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    message_id: str
    status: MessageStatus
    sender: str
    content: MessageContent
    metadata: dict[str, Any]
    attempts: int
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    held_seconds: float  # total time spent held; not counted against max_age
    hold_reason: str
    resent_from: str | None
    recipients: tuple[Recipient, ...]
    owner: str | None = None  # who submitted it (None: not recorded)
    claim: ClaimInfo | None = None  # set while it is `sending`


@dataclass(frozen=True, slots=True)
class MessageDetail:
    message: Message
    events: tuple[Event, ...]
    owner_alive: bool | None = None  # of the claim's owner, when there is a claim
    recovered_within: timedelta | None = None  # a dead owner's claim: the sweep interval


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
    held_for_relay: bool = False  # release_relay releases it; other holds wait for an operator
    hold_relay: str = ""  # with held_for_relay: the relay that held it (of `relay`'s list)


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """What `list` narrows to, besides the status; every field given must match.
    `recipient`: an address of the message (any case); `relay`: a relay carrying one
    of its recipients; `since` <= accepted < `until`; `subject`: a substring (any case)."""

    recipient: str | None = None
    relay: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    subject: str | None = None


ANY_MESSAGE = MessageFilter()


@dataclass(frozen=True, slots=True)
class Page:
    messages: tuple[Message, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class RelayDue:
    """A relay's mail that is due and that no worker has claimed: it waits for room
    (worker/relay_room.py: a slow relay's share of a worker is full) or for a worker."""

    count: int  # messages with a recipient still to deliver through the relay
    oldest_due_at: datetime  # since when the longest-waiting of them has been due


@dataclass(frozen=True, slots=True)
class QueueStats:
    by_status: dict[str, int]
    oldest_pending_at: datetime | None  # oldest queued/deferred message's acceptance time
    # By relay, the mail due at the `now` given to `stats` (none given: empty).
    due_by_relay: Mapping[str, RelayDue] = field(default_factory=dict)
    # By relay, the messages `sending` through it now (a `now` given; else empty).
    sending_by_relay: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    """A relay or queue alert (core.alerting); active until `cleared_at` is set."""

    key: str  # e.g. relay.default.failure_rate; at most one active alert per key
    severity: str  # warning | critical
    title: str
    detail: str
    guidance: str  # a guidance key
    raised_at: datetime
    cleared_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.cleared_at is None


@dataclass(frozen=True, slots=True)
class ClockReading:
    """A clock skew delivery measured: `who`'s clock minus `against`'s (positive:
    ahead), e.g. "delivery on host1" against "the database server"."""

    who: str
    against: str
    skew_seconds: float
    measured_at: datetime


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """What `outbox doctor` reports about the database."""

    backend: str  # sqlite | postgresql
    version: str  # the server's (or SQLite library's) version
    revision: str | None  # the schema's migration revision; None: never migrated
    head: str  # the revision this Outbox needs
    server_time: datetime | None  # the database server's clock; None: it is this machine's

    @property
    def is_migrated(self) -> bool:
        return self.revision == self.head


@dataclass(frozen=True, slots=True)
class RelayAuth:
    """A relay's login state and the credentials stored for it (CLI or API).

    `state` is `ok` or `needs_attention` (its login failed; its mail is held).
    `credentials` is sealed (Fernet) by the caller; None: the config's are used.
    `version` counts operator changes of the credentials: a node that sees a new
    version logs in with the new ones."""

    relay: str
    state: str = "ok"
    version: int = 0
    credentials: str | None = None
    reason: str = ""  # what the relay or token endpoint said
    guidance: str = ""  # a guidance key
    updated_at: datetime | None = None

    @property
    def needs_attention(self) -> bool:
        return self.state == NEEDS_ATTENTION


NEEDS_ATTENTION = "needs_attention"
RELAY_OK = "ok"


@dataclass(frozen=True, slots=True)
class StoredApiKey:
    """An API key made with `outbox keys create`; only its SHA-256 is stored."""

    name: str
    digest: str  # hex SHA-256 of the key
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None
    # Rate limits: None is [auth]'s default for every key, 0 no limit.
    requests_per_minute: int | None = None
    messages_per_minute: int | None = None


# Blobs that no longer need to be kept: their content is deleted, in the transaction.
DeleteContent = Callable[[Sequence[str]], None]
