"""`KeyLookups`: idempotency keys looked up while another look-up is on its way share
the next query, as enqueues share a commit (sql/group_commit.py).

SMTP submission looks up one key per message (its Message-ID and envelope). Twenty
sessions at once took twenty pooled connections at once: over `[database] pool_size`,
the pool opened connections and closed them again as they came back (py-spy: 8 % of
serve's samples in `asyncpg.connect`). Batched, they take one, and one statement."""

from __future__ import annotations

import asyncio

from outbox.store.sql import queries as q
from outbox.store.sql.runner import Runner
from outbox.store.values import Message

Found = tuple[Message, str] | None  # the message, and the hash of the request that made it


class KeyLookups:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._waiting: dict[tuple[str, str], list[asyncio.Future[Found]]] = {}
        self._looking: asyncio.Task[None] | None = None

    async def find(self, owner: str, key: str) -> Found:
        arrived: asyncio.Future[Found] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((owner, key), []).append(arrived)
        if self._looking is None or self._looking.done():
            self._looking = asyncio.create_task(self._look_up_waiting())
        return await arrived

    async def _look_up_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                await self._look_up(batch)
            except BaseException:  # cancelled (the store closing): nobody waits for ever
                for waiters in batch.values():
                    for waiter in waiters:
                        waiter.cancel()
                raise

    async def _look_up(self, batch: dict[tuple[str, str], list[asyncio.Future[Found]]]
                       ) -> None:
        owners: dict[str, list[str]] = {}
        for owner, key in batch:
            owners.setdefault(owner, []).append(key)
        for owner, keys in owners.items():
            try:
                found = await self._runner.read(q.find_by_idempotency_keys, owner, keys)
            except Exception as exc:  # every waiter must hear of the failure
                for key in keys:
                    _settle(batch[(owner, key)], exc)
                continue
            for key in keys:
                for waiter in batch[(owner, key)]:
                    if not waiter.done():  # its caller may have given up
                        waiter.set_result(found.get(key))


def _settle(waiters: list[asyncio.Future[Found]], exc: BaseException) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)
