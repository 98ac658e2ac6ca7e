"""The storage contract: narrow protocols, one per aggregate; domain verbs in,
domain values (`store.values`) out; callers never see rows.

    store.messages     MessageStore     the queue: submit, claim, record, read, operate
    store.relay_auth   RelayAuthStore   relays' login state and stored credentials
    store.keys         KeyStore         API keys (hashed) and shared signing keys
    store.alerts       AlertStore       relay and queue alerts, recent outcomes, clock skew
    store.contacts     ContactStore     the address book: contacts, groups, aliases, usage
    store.blob_index   BlobIndex        what the database knows of blobs, and their chunks
    store.webhooks     WebhookStore     event webhook endpoints and their deliveries
    store.rate_limits  RateLimitStore   API keys' token buckets, shared by every node
    store.governor GovernorStore relays' back-off, probe and throttle (core.governor)
    store.suppressions SuppressionStore the suppression list, and bounces
    store.archive      ArchiveStore     the whole database: snapshot rows, load a backup
    store.integrity    IntegrityStore   impossible states (`outbox check`) and safe repairs
    store.retention    RetentionStore   history and idempotency keys purged in small batches
    store.ui_users     UiUserStore      web UI logins (argon2 hashes), dashboard activity

`Store` holds the facets and the verbs about the database as a whole
(ping, migrate, describe, close). Both backends (SQLite, PostgreSQL)
implement every protocol and pass the same contract suite (tests/contract).
All times are timezone-aware UTC datetimes.

Claiming: a message is claimable when its `due_at` is set and <= now (status `queued` or
`deferred`). `claim_due` sets status `sending`, `claimed_by` (the worker's owner id), a
fresh `claim_token` and `lease_until`, and clears `due_at`, in the transaction that picks
the rows (PostgreSQL `FOR UPDATE SKIP LOCKED`; SQLite `BEGIN IMMEDIATE`). Recording an
attempt is a compare-and-set on the claim token: a worker whose lease was taken over gets
`False` back and nothing is written. `record_and_claim` does both in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from outbox.core.model import MessageStatus
from outbox.core.recovery import AbandonedClaim, RecoveryVerdict
from outbox.store.base_archive import ArchiveStore
from outbox.store.base_blobs import BlobIndex
from outbox.store.base_contacts import ContactStore
from outbox.store.base_integrations import (
    GovernorStore,
    RateLimitStore,
    UiUser,
    UiUserStore,
    WebhookStore,
)
from outbox.store.base_integrity import IntegrityStore
from outbox.store.base_liveness import Liveness
from outbox.store.base_retention import RetentionStore
from outbox.store.base_suppressions import BounceRecord, SuppressionStore
from outbox.store.values import (
    ANY_MESSAGE,
    NEEDS_ATTENTION,
    RELAY_OK,
    Alert,
    Attempt,
    AttemptRecord,
    BlobUse,
    Claim,
    ClockReading,
    DatabaseInfo,
    DeleteContent,
    Event,
    IdempotencyClaim,
    Message,
    MessageDetail,
    MessageFilter,
    NewMessage,
    NewRecipient,
    Page,
    QueueStats,
    Recipient,
    RecipientsSuppressed,
    RecipientUpdate,
    RelayAuth,
    RelayDue,
    StoredApiKey,
    Upload,
)

__all__ = [
    "ANY_MESSAGE",
    "NEEDS_ATTENTION",
    "RELAY_OK",
    "Alert",
    "AlertStore",
    "ArchiveStore",
    "Attempt",
    "AttemptRecord",
    "BlobIndex",
    "BlobUse",
    "BounceRecord",
    "Claim",
    "ClockReading",
    "ContactStore",
    "DatabaseInfo",
    "DeleteContent",
    "Event",
    "GovernorStore",
    "IdempotencyClaim",
    "IntegrityStore",
    "KeyStore",
    "Message",
    "MessageDetail",
    "MessageFilter",
    "MessageStore",
    "NewMessage",
    "NewRecipient",
    "Page",
    "QueueStats",
    "RateLimitStore",
    "Recipient",
    "RecipientUpdate",
    "RecipientsSuppressed",
    "RelayAuth",
    "RelayAuthStore",
    "RelayDue",
    "RetentionStore",
    "Store",
    "StoredApiKey",
    "SuppressionStore",
    "UiUser",
    "UiUserStore",
    "Upload",
    "WebhookStore",
]

# What becomes of an abandoned claim's message (`core.recovery.Recovery.decide`).
Decide = Callable[[AbandonedClaim], RecoveryVerdict]


class MessageStore(Protocol):
    """The queue: messages, their recipients, attempts and events."""

    async def enqueue(self, message: NewMessage) -> tuple[Message, bool]:
        """Insert the message, its recipients and a `queued` (or `held`) event,
        committed durably before returning. With `idempotency` set and the
        (owner, key) pair already used, insert nothing and return the existing
        message with False; the caller compares request hashes. With
        `refuse_suppressed` and a recipient on the suppression list, insert nothing and
        raise `RecipientsSuppressed` (checked in the same transaction)."""

    async def enqueue_many(self, batch: Sequence[NewMessage]) -> list[tuple[Message, bool]]:
        """`enqueue` for each message, in order, committed together (one transaction,
        not one per message); a key already used, or used earlier in `batch`, gives
        that message with False. The caller checks suppressions first (a
        `refuse_suppressed` message that meets one fails the whole batch)."""

    async def find_by_idempotency_key(self, owner: str, key: str) -> tuple[Message, str] | None:
        """The message and request hash stored for this key, if any."""

    async def find_by_idempotency_keys(self, owner: str, keys: Sequence[str]
                                       ) -> dict[str, tuple[Message, str]]:
        """`find_by_idempotency_key` for many keys in one read: the keys found."""

    async def find_by_message_id(self, owner: str, message_id: str) -> Message | None:
        """A message submitted by this owner with that Message-ID header."""

    async def claim_due(self, owner: str, now: datetime, lease_until: datetime,
                        limit: int, busy: Collection[str] = ()) -> list[Claim]:
        """Claim up to `limit` due messages, oldest due first, skipping those whose every
        pending recipient is on one of the `busy` relays; add a `claimed` event to each."""

    async def count_due(self, now: datetime, at_most: int) -> int:
        """How many messages are due at `now`, counted up to `at_most`."""

    async def renew_leases(self, owner: str, tokens: Collection[str], lease_until: datetime) -> int:
        """Extend the lease of this owner's claims with these tokens (the deliveries
        still running: an orphaned claim is not kept alive); returns how many."""

    async def record_attempts(self, records: Sequence[AttemptRecord]) -> list[bool]:
        """Persist each record whose token still holds its claim, in one transaction;
        return, per record, whether it was accepted."""

    async def record_and_claim(self, records: Sequence[AttemptRecord], owner: str,
                               now: datetime, lease_until: datetime, limit: int,
                               at_least: int = 0, busy: Collection[str] = ()
                               ) -> tuple[list[bool], list[Claim]]:
        """`record_attempts`, then `claim_due` if `at_least` are due: one transaction."""

    async def recover_stale(self, now: datetime, decide: Decide,
                            dead_owners: Collection[str] = ()) -> list[str]:
        """Claims whose lease expired before `now` (on the database's clock) or whose
        owner is one of `dead_owners` end: `decide` (core.recovery) says what becomes
        of each message, written with the attempt counted, in the transaction that
        found them. Returns their ids."""

    async def abandon_claim(self, id: str, token: str, now: datetime,
                            verdict: RecoveryVerdict) -> bool:
        """The owner gives back its claim (its delivery raised) with this verdict;
        False, and nothing written, when `token` no longer holds the claim."""

    async def claim_holders(self) -> set[str]:
        """The owners that hold at least one claim (for the liveness check)."""

    async def get(self, id: str) -> MessageDetail:
        """Raise `errors.NotFound` for an unknown id."""

    async def attempts(self, id: str) -> list[Attempt]:
        """The message's finished attempts, oldest first; `errors.NotFound` if unknown."""

    async def cancel(self, id: str, now: datetime) -> Message:
        """Queued, deferred or held → cancelled (with event); otherwise
        `errors.Conflict`."""

    async def retry(self, id: str, now: datetime,
                    reroute: Mapping[str, str] | None = None) -> Message:
        """Deferred, held, failed or partially sent → queued and due now; failed
        and deferred recipients back to pending; a `released` event for held
        mail. Otherwise `errors.Conflict`, and nothing changes. `reroute`: these
        recipients (address -> relay) pointed at other relays, in the same
        transaction."""

    async def hold_relay(self, relay: str, now: datetime, reason: str, event: Event) -> int:
        """Hold every queued/deferred message with a pending recipient on this
        relay (an auth problem): status held, the event added to each."""

    async def release_relay(self, relay: str, now: datetime) -> int:
        """Release the held messages of this relay: queued, due now, `released` event."""

    async def append_event(self, id: str, event: Event) -> None:
        """Add an event to the message's timeline; `errors.NotFound` for an unknown id."""

    async def stats(self, now: datetime | None = None) -> QueueStats:
        """Messages by status, and when the oldest waiting one was accepted. With
        `now`, also each relay's mail due by then that no worker has claimed
        (`due_by_relay`) and its mail a worker has taken (`sending_by_relay`): a walk
        of the due and the sending mail, for an operator's look, not a loop."""

    async def wait_for_new(self, timeout: float) -> None:
        """Return when a message may have become due (new enqueue, retry,
        release; from any process where the backend can tell) or after
        `timeout` seconds."""

    # `list` last: below it, the name shadows the builtin in annotations.
    async def list(self, status: MessageStatus | None, limit: int, cursor: str | None,
                   where: MessageFilter = ANY_MESSAGE) -> Page:
        """Newest first; `cursor` is opaque and comes from a previous page (of the
        same filter); `where` narrows by recipient, relay, time and subject."""

    async def count(self, status: MessageStatus | None,
                    where: MessageFilter = ANY_MESSAGE) -> int:
        """How many messages `list` would page through for this filter."""


class RelayAuthStore(Protocol):
    """Each relay's login state and the credentials stored for it."""

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

    async def hold_for_relay(self, relay: str, version: int, reason: str, guidance: str,
                             now: datetime, hold_reason: str,
                             event: Event) -> tuple[bool, int] | None:
        """The relay `needs_attention` (with `reason`) and all its waiting mail held with
        `event`, a chunk per transaction (the state with the first), as long as the state
        stays; None, and nothing changed, when the relay's credentials are no longer
        `version`. Returns (state changed, messages held)."""

    async def mark_ok(self, relay: str, version: int, now: datetime) -> int | None:
        """The relay `ok` again and the mail held for it released, a chunk per transaction
        (the state with the first) as long as the state stays; None when its state was
        not `version`'s needs_attention."""

    async def store_credentials(self, relay: str, sealed: str | None,
                                now: datetime) -> tuple[int, int]:
        """New credentials (a new version; None forgets the stored ones, so the config's
        apply again) and the relay `ok` in one transaction, with the first chunk of the
        mail held for it released; the rest a chunk per transaction. Returns (version,
        messages released)."""

    async def release_left_held(self, relay: str, now: datetime) -> int:
        """Mail still held for a relay that is `ok`: what a release cut short left behind
        (its process killed, or the database gone, between two chunks). How many."""

    async def relay_states(self) -> tuple[RelayAuth, ...]:
        """Every relay that has a state or stored credentials, by name."""


class KeyStore(Protocol):
    """API keys (only their SHA-256 is stored) and the secrets nodes share."""

    async def create_api_key(self, key: StoredApiKey) -> None:
        """`errors.Conflict` when an active key already has this name."""

    async def find_api_key(self, digest: str) -> StoredApiKey | None:
        """The active (not revoked) key with this digest."""

    async def list_api_keys(self) -> tuple[StoredApiKey, ...]:
        """Every key, revoked ones too, by name and creation."""

    async def revoke_api_key(self, name: str, now: datetime) -> bool:
        """Revoke the active key with this name; False when there is none."""

    async def signing_key(self, name: str, candidate: bytes, now: datetime) -> bytes:
        """The secret stored under `name`; `candidate` is stored if there is none
        yet (the first node to ask wins, every node gets the same one)."""


class AlertStore(Protocol):
    """Relay and queue alerts (core.alerting), and the outcomes they are judged on."""

    async def raise_alert(self, key: str, severity: str, title: str, detail: str,
                          guidance: str, now: datetime) -> bool:
        """Make an alert active; False (and nothing written) when one with this
        key already is, also when another node raised it at the same moment."""

    async def refresh_alert(self, key: str, title: str, detail: str, guidance: str) -> bool:
        """Update the active alert's text (the numbers in it change while it is
        active); False when none is active or its text is already this."""

    async def clear_alert(self, key: str, now: datetime) -> bool:
        """Clear the active alert with this key; False when none was active."""

    async def list_alerts(self, active_only: bool, limit: int = 100) -> tuple[Alert, ...]:
        """Newest first; with `active_only`, only those not cleared."""

    async def relay_outcomes(self, since: datetime) -> dict[str, dict[str, int]]:
        """Attempts finished at or after `since`, counted by relay and outcome
        (an attempt over several relays counts for each)."""

    async def latest_outcomes(self, since: datetime) -> dict[str, str]:
        """Each relay's newest attempt finished at or after `since`: its outcome."""

    async def record_clock_reading(self, reading: ClockReading) -> None:
        """Keep the newest skew measured for (reading.who, reading.against)."""

    async def clock_readings(self, since: datetime) -> tuple[ClockReading, ...]:
        """The readings measured at or after `since`."""


class Store(Protocol):
    """The facets, and the verbs about the database as a whole."""

    messages: MessageStore
    relay_auth: RelayAuthStore
    keys: KeyStore
    alerts: AlertStore
    contacts: ContactStore
    blob_index: BlobIndex
    webhooks: WebhookStore
    rate_limits: RateLimitStore
    governor: GovernorStore
    suppressions: SuppressionStore
    archive: ArchiveStore
    integrity: IntegrityStore
    retention: RetentionStore
    ui_users: UiUserStore
    liveness: Liveness

    async def ping(self) -> None:
        """Raise `errors.StorageError` unless the database answers."""

    def writes_locked_out(self) -> float | None:
        """Seconds this process's oldest pending write has waited, while its writer is
        kept out by another process's write lock (SQLite); None otherwise."""

    async def migrate(self) -> None:
        """Create or upgrade the schema (Alembic); safe to call on every start."""

    async def describe_database(self) -> DatabaseInfo:
        """Backend, version, schema revision and the server's clock."""

    async def database_time(self) -> datetime | None:
        """The database server's clock (leases are compared on it, so that nodes
        whose clocks disagree never take over each other's live claims); None
        when the database is a file on this machine (SQLite)."""

    async def check_writable(self) -> None:
        """`StorageError` naming the cause unless the database takes writes (a
        read-only file, a read-only replica)."""

    async def close(self) -> None:
        """Finish what is under way (group commit, notifications), then release
        the connections."""
