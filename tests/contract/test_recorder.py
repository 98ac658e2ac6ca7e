"""The delivery loop's recorder against each backend: results wait to be written together,
and a claim of the worker's own takes those waiting along, in its one transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from outbox.core.model import MessageStatus
from outbox.store.base import Store
from outbox.worker.recorder import ClaimAsk, Recorder
from tests.contract.support import LEASE, at, finished, new_message


async def test_a_claim_takes_the_results_waiting_along(store: Store) -> None:
    for id in ("m1", "m2", "m3", "m4"):
        await store.messages.enqueue(new_message(id=id))
    c1, c2 = await store.messages.claim_due("w", at(1), at(1) + LEASE, 2)
    alone: list[int] = []
    record_attempts = store.messages.record_attempts

    async def recording(records: Any) -> Any:
        alone.append(len(records))
        return await record_attempts(records)

    store.messages.record_attempts = recording  # type: ignore[method-assign]
    recorder = Recorder(store.messages)  # its run() is not started: nothing flushes
    waiting = [asyncio.create_task(recorder.record(finished(claim, MessageStatus.SENT)))
               for claim in (c1, c2)]
    await asyncio.sleep(0)  # both results are handed over and wait

    claims = await recorder.claim(ClaimAsk("w", at(3), at(3) + LEASE, 5))

    assert sorted(claim.message.id for claim in claims) == ["m3", "m4"]
    assert await asyncio.gather(*waiting) == [True, True]
    assert alone == [], "the results went with the claim"
    assert {(await store.messages.get(id)).message.status for id in ("m1", "m2")} == {
        MessageStatus.SENT}
    assert await recorder.claim(ClaimAsk("w", at(4), at(4) + LEASE, 5)) == []


async def test_a_claim_that_fails_fails_the_results_it_took(store: Store) -> None:
    """Each waiter hears of the failure (the attempt tries to record again), and the
    claim loop gets the error to back off on."""
    await store.messages.enqueue(new_message(id="m1"))
    (c1,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the database went away")

    store.messages.record_and_claim = broken  # type: ignore[method-assign]
    recorder = Recorder(store.messages)
    waiting = asyncio.create_task(recorder.record(finished(c1, MessageStatus.SENT)))
    await asyncio.sleep(0)

    with pytest.raises(ConnectionError):
        await recorder.claim(ClaimAsk("w", at(3), at(3) + LEASE, 5))
    (outcome,) = await asyncio.gather(waiting, return_exceptions=True)
    assert isinstance(outcome, ConnectionError)
    assert (await store.messages.get("m1")).message.status is MessageStatus.SENDING
