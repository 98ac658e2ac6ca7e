"""Group commit of attempt results, and the next claim with them while there is a backlog.

Deliveries finish one by one; writing each result in its own transaction
would make the database, not SMTP, the bottleneck. Results queue here and are
written together: while one transaction commits, the next batch gathers.
Each caller still waits for its own commit, so nothing is acknowledged early.

While mail is waiting (the worker's last claim came back full), the transaction that
writes a batch of results also claims as many messages as those results free
(`Ride`): on SQLite's one writer, a claim of its own cost a transaction, a flush to
disk and a hand-over of the write turn for each batch (issue 15). The other way round,
a claim the worker makes on its own (new mail woke it) takes the results waiting to
be written along (`claim`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from outbox.store.base import AttemptRecord, MessageStore
from outbox.store.values import Claim

MAX_BATCH = 500

Pending = Sequence[tuple[AttemptRecord, "asyncio.Future[bool]"]]  # results and their waiters


@dataclass(frozen=True, slots=True)
class ClaimAsk:
    """A claim of `limit` messages, none of them only for the `busy` relays (worker/
    relay_room.py). One that rides with results (`Ride.ask`) is made only if `at_least`
    are due; the claim loop counts for itself before it asks (`claim`)."""

    owner: str
    now: datetime
    lease_until: datetime
    limit: int
    at_least: int = 0
    busy: frozenset[str] = frozenset()


class Ride(Protocol):
    """The worker's side: what to claim with results, and what to do with the claims."""

    def handed(self, token: str) -> None:
        """The attempt of the claim `token` has handed its result over: it is done."""

    def ask(self) -> ClaimAsk | None:
        """The claim to make with the results about to be written, or None."""

    def took(self, ask: ClaimAsk, claims: list[Claim]) -> None:
        """What `ask` got (nothing when the write failed); called once per `ask`."""


class Recorder:
    def __init__(self, store: MessageStore, ride: Ride | None = None) -> None:
        self._store = store
        self._ride = ride
        self._pending: list[tuple[AttemptRecord, asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()

    async def record(self, record: AttemptRecord) -> bool:
        """Persist one result; True unless the claim was lost meanwhile."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        self._wake.set()
        if self._ride is not None:
            self._ride.handed(record.token)
        return await future

    async def run(self) -> None:
        """Write batches until cancelled; a cancelled run first drains what waits."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._flush()
        finally:
            await asyncio.shield(self._drain())

    async def claim(self, ask: ClaimAsk) -> list[Claim]:
        """A claim of the worker's own, with whatever results are waiting to be written:
        one transaction, where they would have taken one each. Raises what the write
        raised (the results' waiters hear of it too)."""
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        if not batch:
            return await self._store.claim_due(ask.owner, ask.now, ask.lease_until, ask.limit,
                                               busy=ask.busy)
        try:
            results, claims = await self._store.record_and_claim(
                [record for record, _ in batch], ask.owner, ask.now, ask.lease_until,
                ask.limit, busy=ask.busy)
        except Exception as exc:
            _fail(batch, exc)
            raise
        _settle(batch, results)
        return claims

    async def _drain(self) -> None:
        while self._pending:
            await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            await self._write(batch)

    async def _write(self, batch: Pending) -> None:
        records = [record for record, _ in batch]
        ask = self._ride.ask() if self._ride is not None else None
        claims: list[Claim] = []
        try:
            if ask is None:
                results = await self._store.record_attempts(records)
            else:
                results, claims = await self._store.record_and_claim(
                    records, ask.owner, ask.now, ask.lease_until, ask.limit, ask.at_least,
                    busy=ask.busy)
        except Exception as exc:  # every waiter must hear of the failure
            _fail(batch, exc)
            return
        finally:
            if ask is not None and self._ride is not None:
                self._ride.took(ask, claims)
        _settle(batch, results)


def _settle(batch: Pending, results: Sequence[bool]) -> None:
    for (_, future), accepted in zip(batch, results, strict=True):
        if not future.done():
            future.set_result(accepted)


def _fail(batch: Pending, exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
