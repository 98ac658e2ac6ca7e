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

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from outbox.core.contacts import (
    AddressBook,
    Alias,
    Contact,
    ContactChanges,
    Group,
    NewContact,
    Source,
    Suggestion,
    SyncState,
)
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
    hold_guidance: str | None = None  # the guidance key on the `held` event
    resent_from: str | None = None
    blobs: Sequence[BlobUse] = ()  # the stored files its attachments and links use


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
    held_for_relay: bool = False  # release_relay releases it; other holds wait for an operator


@dataclass(frozen=True, slots=True)
class Page:
    messages: tuple[Message, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    by_status: dict[str, int]
    oldest_pending_at: datetime | None  # oldest queued/deferred message's acceptance time


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


# Blobs that no longer need to be kept: their content is deleted, in the transaction.
DeleteContent = Callable[[Sequence[str]], None]


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

    # -- operations: alerts and diagnostics ---------------------------------------------

    async def raise_alert(self, key: str, severity: str, title: str, detail: str,
                          guidance: str, now: datetime) -> bool:
        """Make an alert active; False (and nothing written) when one with this
        key already is, also when another node raised it at the same moment."""

    async def clear_alert(self, key: str, now: datetime) -> bool:
        """Clear the active alert with this key; False when none was active."""

    async def list_alerts(self, active_only: bool, limit: int = 100) -> tuple[Alert, ...]:
        """Newest first; with `active_only`, only those not cleared."""

    async def relay_outcomes(self, since: datetime) -> dict[str, dict[str, int]]:
        """Attempts finished at or after `since`, counted by relay and outcome
        (an attempt over several relays counts for each)."""

    async def describe_database(self) -> DatabaseInfo:
        """Backend, version, schema revision and the server's clock."""

    # -- relay authentication and API keys ----------------------------------------------

    async def load_relay_credentials(self, relay: str) -> RelayAuth:
        """The relay's state and stored credentials (defaults when never set)."""

    async def save_relay_credentials(self, relay: str, sealed: str, now: datetime) -> int:
        """Store new credentials for the relay; returns their version (the last + 1).
        The state is left as it is."""

    async def rotate_relay_credentials(self, relay: str, sealed: str, version: int,
                                       now: datetime) -> bool:
        """Replace the stored credentials keeping their version (the provider rotated a
        refresh token); False, and nothing written, if `version` is no longer current."""

    async def set_relay_state(self, relay: str, state: str, reason: str, guidance: str,
                              now: datetime, *, version: int | None = None) -> bool:
        """Set the relay's state; with `version`, only while those credentials are
        current. True when the state changed."""

    async def relay_states(self) -> tuple[RelayAuth, ...]:
        """Every relay that has a state or stored credentials, by name."""

    async def create_api_key(self, key: StoredApiKey) -> None:
        """`errors.Conflict` when an active key already has this name."""

    async def find_api_key(self, digest: str) -> StoredApiKey | None:
        """The active (not revoked) key with this digest."""

    async def list_api_keys(self) -> tuple[StoredApiKey, ...]:
        """Every key, revoked ones too, by name and creation."""

    async def revoke_api_key(self, name: str, now: datetime) -> bool:
        """Revoke the active key with this name; False when there is none."""

    # -- the address book (core.contacts), usage, autocomplete, rerouting ------------------
    # Contacts and groups: `errors.NotFound` for an unknown id or name; a group member
    # that names an unknown contact or group is `errors.InputError` naming the member.

    async def add_contact(self, contact: NewContact, now: datetime) -> Contact: ...

    async def replace_contact(self, id: int, contact: NewContact, now: datetime) -> Contact: ...

    async def delete_contact(self, id: int) -> None:
        """Also removes it from every group."""

    async def get_contact(self, id: int) -> Contact: ...

    async def list_contacts(self, limit: int | None = None, after: int = 0,
                            source: Source | None = None) -> Sequence[Contact]:
        """By id, those after `after`; all of them without `limit`."""

    async def find_contacts(self, address_keys: Collection[str]) -> Sequence[Contact]:
        """Contacts holding any of these addresses (`core.contacts.address_key`)."""

    async def apply_contact_changes(self, changes: ContactChanges,
                                    now: datetime) -> Sequence[int]:
        """Updates, merges, removals, additions and the sync state, in one
        transaction; returns the ids of the added contacts."""

    async def save_group(self, group: Group, now: datetime) -> Group:
        """Create or replace the group with this name."""

    async def get_group(self, name: str) -> Group: ...

    async def delete_group(self, name: str) -> None: ...

    async def list_groups(self) -> Sequence[Group]: ...

    async def save_alias(self, alias: Alias, now: datetime) -> Alias:
        """Create or replace the alias with this name."""

    async def delete_alias(self, name: str) -> None: ...

    async def list_aliases(self) -> Sequence[Alias]: ...

    async def address_book_for(self, names: Collection[str]) -> AddressBook:
        """The aliases, groups (nested ones included) and contacts these name keys
        refer to: what `core.expand` needs for one submission."""

    async def record_usage(self, counts: Mapping[str, int], now: datetime) -> None:
        """Count uses of these addresses (by address key) at `now`, for ranking."""

    async def suggest(self, prefix: str, limit: int = 10) -> Sequence[Suggestion]:
        """Contacts' addresses whose name, a word of the name, or the address starts
        with `prefix`; most used (often and lately) first."""

    async def get_sync_state(self, source: str) -> SyncState | None: ...

    async def reroute_recipients(self, id: str, relays: Mapping[str, str]) -> None:
        """Point these recipients (address -> relay) of a message at other relays."""

    # -- blobs: attachment content's metadata, uses, uploads, GC, database chunks -----------

    async def register_blob(self, sha256: str, size: int, keep_until: datetime,
                            now: datetime) -> None:
        """Record stored content (idempotent). It is kept at least until
        `keep_until` even when nothing uses it; a later call only extends that."""

    async def find_blobs(self, sha256s: Sequence[str]) -> dict[str, int]:
        """The size of each of these blobs that is registered."""

    async def create_upload(self, upload: Upload) -> None:
        """Record an upload of registered content; extends the blob's keep_until
        to the upload's expiry."""

    async def find_upload(self, owner: str, id: str, now: datetime) -> Upload | None:
        """The owner's upload with this id, unless it expired."""

    async def blob_refcount(self, sha256: str, now: datetime, keep_finished: timedelta) -> int:
        """Live uses of the blob: messages not finished (or finished less than
        `keep_finished` ago) and download links not yet expired."""

    async def collect_blobs(self, now: datetime, keep_finished: timedelta,
                            delete_content: DeleteContent, limit: int = 500) -> tuple[str, ...]:
        """Delete expired uploads, stale partial chunks, and up to `limit` blobs
        past their keep_until with no live use, with their database chunks;
        `delete_content(sha256s)` runs inside the transaction before it commits
        (content kept elsewhere, e.g. files). Returns the deleted blobs."""

    async def write_blob_chunk(self, key: str, seq: int, data: bytes, now: datetime) -> None:
        """Store one chunk of content held in the database, under a staging key."""

    async def read_blob_chunk(self, key: str, seq: int) -> bytes | None:
        """Chunk `seq` (0-based) of a blob held in the database; None past the end."""

    async def seal_blob_chunks(self, staging_key: str, sha256: str, size: int,
                               keep_until: datetime, now: datetime) -> None:
        """The chunks written under `staging_key` become the blob's (or are
        dropped, when it is stored already), and the blob is registered."""

    async def drop_blob_chunks(self, key: str) -> None:
        """Delete the chunks stored under `key` (an abandoned upload)."""

    async def signing_key(self, name: str, candidate: bytes, now: datetime) -> bytes:
        """The secret stored under `name`; `candidate` is stored if there is none
        yet (the first node to ask wins, every node gets the same one)."""
