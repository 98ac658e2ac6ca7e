"""Retention (`store.retention`): batches of at most `limit`, only finished mail past
its time, idempotency keys forgotten, on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from outbox.core.model import MessageStatus
from outbox.errors import NotFound
from outbox.store.base import Store
from outbox.store.values import IdempotencyClaim
from tests.contract.support import LEASE, T0, at, finished, new_message


async def finish(store: Store, count: int, status: MessageStatus, when: float) -> list[str]:
    claims = await store.messages.claim_due("w1", at(when), at(when) + LEASE, count)
    assert len(claims) == count
    await store.messages.record_attempts([finished(c, status, finished_at=at(when))
                                          for c in claims])
    return [c.message.id for c in claims]


async def test_finished_mail_past_its_time_goes_in_batches_with_its_history(
        store: Store) -> None:
    for n in range(7):
        await store.messages.enqueue(new_message(accepted_at=T0 + timedelta(milliseconds=n)))
    sent = await finish(store, 4, MessageStatus.SENT, 10)
    failed = await finish(store, 1, MessageStatus.FAILED, 11)
    waiting = await store.messages.enqueue(new_message(accepted_at=at(1)))

    assert await store.retention.purge_finished(at(5), 10) == 0  # finished after at(5)
    batches = [await store.retention.purge_finished(at(20), 2) for _ in range(4)]

    assert batches == [2, 2, 1, 0]
    for id in [*sent, *failed]:
        with pytest.raises(NotFound):
            await store.messages.get(id)
    remaining = await store.messages.list(None, 50, None)
    assert len(remaining.messages) == 3  # 2 never claimed + the late one
    assert waiting[0].id in {m.id for m in remaining.messages}
    assert all(m.status is MessageStatus.QUEUED for m in remaining.messages)


async def test_idempotency_keys_are_forgotten_after_their_ttl(store: Store) -> None:
    for n in range(3):
        await store.messages.enqueue(new_message(
            accepted_at=at(n), idempotency=IdempotencyClaim("app", f"k{n}", "h")))

    assert await store.retention.purge_idempotency_keys(at(1.5), 1) == 1
    assert await store.retention.purge_idempotency_keys(at(1.5), 1) == 1
    assert await store.retention.purge_idempotency_keys(at(1.5), 1) == 0

    assert await store.messages.find_by_idempotency_key("app", "k0") is None
    assert await store.messages.find_by_idempotency_key("app", "k1") is None
    assert await store.messages.find_by_idempotency_key("app", "k2") is not None


async def test_cleared_alerts_go_and_space_is_reclaimed(store: Store) -> None:
    await store.alerts.raise_alert("relay:a", "warning", "t", "d", "g", at(0))
    await store.alerts.clear_alert("relay:a", at(1))
    await store.alerts.raise_alert("relay:b", "warning", "t", "d", "g", at(2))

    assert await store.retention.purge_cleared_alerts(at(5), 10) == 1
    assert [a.key for a in await store.alerts.list_alerts(False)] == ["relay:b"]
    assert await store.retention.reclaim_space(100) >= 0
