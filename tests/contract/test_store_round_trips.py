"""PostgreSQL: the statements of the hot path, counted (issue 15). A group commit of
submits, with their suppression check, idempotency keys and the NOTIFY that wakes the
delivery processes, is one statement; so is a batch of attempt results. Each
statement is a round trip that cost serve or the delivery process 100-250 µs of CPU.
SQLite has no round trips: one process reads and writes the file."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event

from outbox.core.model import MessageStatus
from outbox.store.base import IdempotencyClaim, Store
from tests.contract.conftest import OpenStore
from tests.contract.support import LEASE, at, finished, new_message

POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgresql"])


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL of every statement `store` sends meanwhile."""
    engine = store._run.engine.sync_engine  # type: ignore[attr-defined]
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


@POSTGRES_ONLY
async def test_a_group_commit_is_one_statement_that_wakes_other_processes(
        store: Store, open_stores: OpenStore) -> None:
    other = await open_stores()  # a delivery process, waiting for new mail
    await other.messages.wait_for_new(0.01)  # starts listening
    waiter = asyncio.create_task(other.messages.wait_for_new(30))
    await asyncio.sleep(0.05)
    submits = [replace(new_message(id=f"m{n}"), refuse_suppressed=True,
                       idempotency=IdempotencyClaim("app", f"key-{n}", "hash"))
               for n in range(3)]

    with statements(store) as sent:
        created = await asyncio.gather(*(store.messages.enqueue(m) for m in submits))
        await asyncio.wait_for(waiter, 5)
        await asyncio.sleep(0.1)  # a NOTIFY of its own would have gone by now

    assert [is_new for _, is_new in created] == [True] * 3
    assert len(sent) == 1, sent
    assert "suppressions" in sent[0] and "pg_notify" in sent[0]


@POSTGRES_ONLY
async def test_a_batch_of_results_is_one_statement(store: Store) -> None:
    for n in range(3):
        await store.messages.enqueue(new_message(id=f"m{n}", to=["a@example.com",
                                                                 "b@example.com"]))
    claims = await store.messages.claim_due("w", at(1), at(1) + LEASE, 3)
    results = [finished(claims[0], MessageStatus.SENT),
               finished(claims[1], MessageStatus.DEFERRED, due_at=at(60)),
               finished(claims[2], MessageStatus.SENT, token="not-the-token")]

    with statements(store) as sent:
        assert await store.messages.record_attempts(results) == [True, True, False]

    assert len(sent) == 1, sent
