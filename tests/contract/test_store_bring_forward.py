"""`bring_relay_forward` on both backends: the deferred mail of one relay due within a
window becomes due now (what a relay's back-off held back, once `outbox relay test`
ended it); later mail, other relays' mail and finished recipients are left alone."""

from __future__ import annotations

from datetime import datetime

import pytest

from outbox.core.model import MessageStatus
from outbox.store.base import Store
from outbox.store.sql import relay_holds
from tests.contract.support import LEASE, at, finished, new_message


async def _deferred(store: Store, relay: str, due_at: datetime, *,
                    status: MessageStatus = MessageStatus.DEFERRED) -> str:
    message = new_message(relay=relay)
    await store.messages.enqueue(message)
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    assert claim.message.id == message.id
    assert await store.messages.record_attempts([finished(claim, status, due_at=due_at,
                                                          count_attempt=False)]) == [True]
    return message.id


async def _due(store: Store, id: str) -> datetime | None:
    return (await store.messages.get(id)).message.due_at


@pytest.mark.parametrize("chunk", [2, relay_holds.CHUNK], ids=["small chunks", "default"])
async def test_the_relays_mail_within_the_window_is_due_now(
        store: Store, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(relay_holds, "CHUNK", chunk)
    waiting = [await _deferred(store, "default", at(600 + n)) for n in range(5)]
    later = await _deferred(store, "default", at(5000))
    other = await _deferred(store, "other", at(600))
    sent = await _deferred(store, "default", at(600), status=MessageStatus.SENT)

    assert await store.governor.bring_relay_forward("default", at(10), at(1000)) == 5

    assert [await _due(store, id) for id in waiting] == [at(10)] * 5
    assert await _due(store, later) == at(5000)
    assert await _due(store, other) == at(600)
    assert (await store.messages.get(sent)).message.status is MessageStatus.SENT
    claimed = await store.messages.claim_due("w", at(10), at(10) + LEASE, 10)
    assert {c.message.id for c in claimed} == set(waiting)
    assert await store.governor.bring_relay_forward("default", at(11), at(1000)) == 0
