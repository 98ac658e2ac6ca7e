"""`SqlMessages`: `store.base.MessageStore` over a `Runner`, each verb one transaction.

The SQL is in sql/queries.py. What differs between backends comes in from
the backend: `pick_due` (the claim statement), the `Wakeup`, and the
`Inserter` that commits enqueued messages (by default `GroupCommit`, which puts
concurrent enqueues into one commit, sql/group_commit.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection

from outbox.core.model import Event, EventType, MessageStatus
from outbox.core.recovery import RecoveryVerdict
from outbox.errors import Conflict, InputError, NotFound
from outbox.store import rows
from outbox.store.base import Decide
from outbox.store.sql import due_mail, listing, recovery
from outbox.store.sql import queries as q
from outbox.store.sql import relay_holds as holds
from outbox.store.sql.key_lookups import KeyLookups
from outbox.store.sql.runner import Runner
from outbox.store.sql.wakeup import Notice, Wakeup
from outbox.store.values import (
    ANY_MESSAGE,
    Attempt,
    AttemptRecord,
    Claim,
    Message,
    MessageDetail,
    MessageFilter,
    NewMessage,
    Page,
    QueueStats,
)


class Picked(Protocol):
    """What a claim took, oldest due first: enough for the claim's transaction to write
    its `claimed` events, and the messages, built once that transaction has ended (on
    SQLite, outside the write turn every other process waits for: sqlite_claim.py)."""

    def claimed(self) -> list[tuple[str, int]]:
        """Each message's id and its attempts before this claim."""
        ...

    def messages(self) -> list[Message]:
        ...


class Hydrated:
    """Messages already built inside the claim's transaction (PostgreSQL)."""

    def __init__(self, claimed: list[Message]) -> None:
        self._messages = claimed

    def claimed(self) -> list[tuple[str, int]]:
        return [(message.id, message.attempts) for message in self._messages]

    def messages(self) -> list[Message]:
        return self._messages


# Claim due rows with the parameters of `queries.claim_params`.
PickDue = Callable[[Connection, dict[str, Any]], Picked]


class Inserter(Protocol):
    """Commits new messages for `enqueue`."""

    # Whether each commit wakes the other processes itself (`Wakeup.notice`).
    notifies: bool

    async def insert(self, message: NewMessage) -> bool:
        """Insert and commit; False if its idempotency key is already taken."""
        ...

    async def insert_many(self, batch: Sequence[NewMessage]) -> list[bool]:
        """Insert and commit all in one transaction (per group commit); per message,
        False if its idempotency key is already taken (by another or an earlier one)."""
        ...

    async def close(self) -> None:
        """Wait for the inserts under way."""
        ...


async def insert_one(runner: Runner, message: NewMessage, notice: Notice | None = None
                     ) -> bool:
    """One message in its own transaction (NOTIFYing `notice` as it commits, on
    PostgreSQL); False if its idempotency key is taken."""
    try:
        await runner.write_first(q.insert_message, message, notice)
    except Conflict:
        if message.idempotency is None:
            raise
        return False
    return True


class SqlMessages:
    """The queue's verbs over one runner."""

    def __init__(self, runner: Runner, pick_due: PickDue, wakeup: Wakeup,
                 inserter: Inserter) -> None:
        self._run = runner
        self._pick_due = pick_due
        self._wakeup = wakeup
        self._inserter = inserter
        self._key_lookups = KeyLookups(runner)

    # -- submission ------------------------------------------------------------------------

    async def enqueue(self, message: NewMessage) -> tuple[Message, bool]:
        rows.check_new(message)
        if not await self._inserter.insert(message):
            return await self._existing(message), False
        if message.status is MessageStatus.QUEUED:
            self._wakeup.announce(notified=self._inserter.notifies)
        return rows.accepted_message(message), True

    async def enqueue_many(self, batch: Sequence[NewMessage]) -> list[tuple[Message, bool]]:
        for message in batch:
            rows.check_new(message)
        created = await self._inserter.insert_many(batch) if batch else []
        if any(is_new and m.status is MessageStatus.QUEUED
               for m, is_new in zip(batch, created, strict=True)):
            self._wakeup.announce(notified=self._inserter.notifies)
        return [(rows.accepted_message(m), True) if is_new else (await self._existing(m), False)
                for m, is_new in zip(batch, created, strict=True)]

    async def _existing(self, message: NewMessage) -> Message:
        """The message that holds the idempotency key `message` could not take."""
        found = await self._find_duplicate(message)
        if found is None:  # the key was free, so it was the id
            raise Conflict(f"a message with id {message.id} already exists")
        return found

    async def _find_duplicate(self, message: NewMessage) -> Message | None:
        claim = message.idempotency
        if claim is None:
            return None
        found = await self.find_by_idempotency_key(claim.owner, claim.key)
        return found[0] if found else None

    async def find_by_idempotency_key(self, owner: str, key: str) -> tuple[Message, str] | None:
        return await self._key_lookups.find(owner, key)

    async def find_by_idempotency_keys(self, owner: str, keys: Sequence[str]
                                       ) -> dict[str, tuple[Message, str]]:
        return await self._run.read(q.find_by_idempotency_keys, owner, keys) if keys else {}

    async def find_by_message_id(self, owner: str, message_id: str) -> Message | None:
        return await self._run.read(q.find_by_message_id, owner, message_id)

    # -- claims ----------------------------------------------------------------------------

    async def claim_due(self, owner: str, now: datetime, lease_until: datetime,
                        limit: int, busy: Collection[str] = ()) -> list[Claim]:
        if limit <= 0:
            return []
        batch = uuid.uuid4().hex
        picked = await self._run.write(self._claim, q.claim_params(owner, batch, now,
                                                                   lease_until, limit, busy))
        return _claims(picked.messages(), owner, batch, lease_until)

    def _claim(self, conn: Connection, params: dict[str, Any]) -> Picked:
        picked = self._pick_due(conn, params)
        owner, now = params["c_owner"], params["c_now"]
        q.insert_events(conn, [(id, Event(now, EventType.CLAIMED, attempts + 1,
                                          detail=f"claimed by {owner}"))
                               for id, attempts in picked.claimed()])
        return picked

    async def count_due(self, now: datetime, at_most: int) -> int:
        return await self._run.read(q.count_due, now, at_most)

    async def renew_leases(self, owner: str, tokens: Collection[str],
                           lease_until: datetime) -> int:
        return await self._run.write(recovery.renew_leases, owner, tokens, lease_until)

    async def record_attempts(self, records: Sequence[AttemptRecord]) -> list[bool]:
        if not records:
            return []
        return await self._run.write(q.record_attempts, records)

    async def record_and_claim(self, records: Sequence[AttemptRecord], owner: str,
                               now: datetime, lease_until: datetime, limit: int,
                               at_least: int = 0, busy: Collection[str] = ()
                               ) -> tuple[list[bool], list[Claim]]:
        if limit <= 0:
            return await self.record_attempts(records), []
        batch = uuid.uuid4().hex
        recorded, picked = await self._run.write(
            self._record_then_claim, records,
            q.claim_params(owner, batch, now, lease_until, limit, busy), at_least)
        return recorded, _claims(picked.messages(), owner, batch, lease_until)

    def _record_then_claim(self, conn: Connection, records: Sequence[AttemptRecord],
                           params: dict[str, Any], at_least: int
                           ) -> tuple[list[bool], Picked]:
        recorded = q.record_attempts(conn, records) if records else []
        if at_least and q.count_due(conn, params["c_now"], at_least) < at_least:
            return recorded, Hydrated([])
        return recorded, self._claim(conn, params)

    async def recover_stale(self, now: datetime, decide: Decide,
                            dead_owners: Collection[str] = ()) -> list[str]:
        recovered = await self._run.write(recovery.recover_stale, now, dead_owners, decide)
        if recovered:
            self._wakeup.announce()
        return recovered

    async def abandon_claim(self, id: str, token: str, now: datetime,
                            verdict: RecoveryVerdict) -> bool:
        given_back = await self._run.write(recovery.abandon_claim, id, token, now, verdict)
        if given_back:
            self._wakeup.announce()
        return given_back

    async def claim_holders(self) -> set[str]:
        return await self._run.read(recovery.claim_holders)

    # -- reading ---------------------------------------------------------------------------

    async def get(self, id: str) -> MessageDetail:
        return await self._run.read(q.get_detail, id)

    async def attempts(self, id: str) -> list[Attempt]:
        return await self._run.read(q.list_attempts, id)

    async def stats(self, now: datetime | None = None) -> QueueStats:
        return await self._run.read(due_mail.stats_at, now)

    async def wait_for_new(self, timeout: float) -> None:
        await self._wakeup.wait(timeout)

    # -- operator actions ------------------------------------------------------------------

    async def cancel(self, id: str, now: datetime) -> Message:
        return await self._run.write(q.cancel, id, now)

    async def retry(self, id: str, now: datetime,
                    reroute: Mapping[str, str] | None = None) -> Message:
        message = await self._run.write(q.retry, id, now, reroute or {})
        self._wakeup.announce()
        return message

    async def hold_relay(self, relay: str, now: datetime, reason: str, event: Event) -> int:
        def chunk() -> Awaitable[int]:
            return self._run.write(holds.hold_relay, relay, now, reason, event)
        return await holds.in_chunks(await chunk(), chunk)

    async def release_relay(self, relay: str, now: datetime) -> int:
        async def chunk() -> int:
            released = await self._run.write(holds.release_relay, relay, now)
            if released:
                self._wakeup.announce()  # the worker starts on this chunk meanwhile
            return released
        return await holds.in_chunks(await chunk(), chunk)

    async def append_event(self, id: str, event: Event) -> None:
        try:
            await self._run.write(q.insert_events, [(id, event)])
        except Conflict as exc:  # the foreign key: no such message
            raise NotFound(f"no message with id {id}") from exc

    # `list` last: below it, the name shadows the builtin in annotations.
    async def list(self, status: MessageStatus | None, limit: int, cursor: str | None,
                   where: MessageFilter = ANY_MESSAGE) -> Page:
        if limit < 1:
            raise InputError("limit must be at least 1", field="limit")
        after = listing.decode_cursor(cursor) if cursor else None
        return await self._run.read(listing.page, status, limit, after, where)

    async def count(self, status: MessageStatus | None,
                    where: MessageFilter = ANY_MESSAGE) -> int:
        return await self._run.read(listing.count, status, where)


def _claims(claimed: Sequence[Message], owner: str, batch: str,
            lease_until: datetime) -> list[Claim]:
    lease = lease_until.astimezone(UTC)
    return [Claim(message, owner, q.claim_token(batch, message.id), lease)
            for message in claimed]
