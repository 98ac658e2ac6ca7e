"""claim_due and record_and_claim with busy relays (worker/relay_room.py): a worker with
no room left for a relay claims past that relay's due mail, to the mail of the others."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from outbox.core.model import MessageStatus, RecipientStatus, RecipientUpdate
from outbox.store.base import Store
from outbox.store.values import NewRecipient
from tests.contract.conftest import OpenStore
from tests.contract.support import LEASE, at, claim_until_empty, finished, new_message


async def test_a_claim_skips_the_mail_of_busy_relays_and_leaves_it_queued(
        store: Store) -> None:
    for n in range(5):
        await store.messages.enqueue(new_message(id=f"slow{n}", accepted_at=at(n),
                                                 relay="slow"))
    await store.messages.enqueue(new_message(id="fast", accepted_at=at(10), relay="fast"))
    await store.messages.enqueue(new_message(id="other", accepted_at=at(11), relay="other"))

    claims = await store.messages.claim_due("w", at(20), at(20) + LEASE, 10,
                                            busy={"slow", "other"})

    assert [c.message.id for c in claims] == ["fast"]
    skipped = (await store.messages.get("slow0")).message
    assert skipped.status is MessageStatus.QUEUED and skipped.due_at == at(0)
    rest = await store.messages.claim_due("w", at(20), at(20) + LEASE, 10)
    assert [c.message.id for c in rest] == [f"slow{n}" for n in range(5)] + ["other"]


async def test_a_message_with_a_pending_recipient_on_a_free_relay_is_claimed(
        store: Store) -> None:
    """Only mail whose every pending recipient is on a busy relay waits; a recipient
    already sent does not count."""
    both = new_message(id="both", accepted_at=at(1), to=["ann@slow.test"], relay="slow")
    both = replace(both, recipients=[*both.recipients,
                                     NewRecipient("bob@fast.test", "to", "fast")])
    await store.messages.enqueue(both)
    await store.messages.enqueue(new_message(id="slow", accepted_at=at(2), relay="slow"))

    (claim,) = await store.messages.claim_due("w", at(3), at(3) + LEASE, 10, busy={"slow"})
    assert claim.message.id == "both"
    await store.messages.record_attempts([finished(
        claim, MessageStatus.DEFERRED, due_at=at(4), count_attempt=False,
        updates=[RecipientUpdate("ann@slow.test", RecipientStatus.DEFERRED, 451, "4.3.0",
                                 "later", "x"),
                 RecipientUpdate("bob@fast.test", RecipientStatus.SENT, 250, "2.0.0",
                                 "ok", "sent")])])

    assert await store.messages.claim_due("w", at(5), at(5) + LEASE, 10, busy={"slow"}) == []
    assert [c.message.id for c in await store.messages.claim_due(
        "w", at(5), at(5) + LEASE, 10, busy={"fast"})] == ["slow", "both"]


async def test_a_claim_with_results_skips_busy_relays_too(store: Store) -> None:
    await store.messages.enqueue(new_message(id="first", accepted_at=at(1), relay="fast"))
    await store.messages.enqueue(new_message(id="slow", accepted_at=at(2), relay="slow"))
    await store.messages.enqueue(new_message(id="fast", accepted_at=at(3), relay="fast"))
    (claim,) = await store.messages.claim_due("w", at(4), at(4) + LEASE, 1)

    recorded, claims = await store.messages.record_and_claim(
        [finished(claim, MessageStatus.SENT)], "w", at(5), at(5) + LEASE, 10, busy={"slow"})

    assert recorded == [True]
    assert [c.message.id for c in claims] == ["fast"]


async def test_a_claim_past_busy_relays_takes_the_oldest_due_mail_of_every_other_relay(
        store: Store) -> None:
    """Each relay's mail is read on its own (store/sql/busy_claim.py): what it returns
    is still the oldest due first across relays, mail with recipients on several relays
    included, `limit` at most, and nothing not yet due."""
    await store.messages.enqueue(new_message(id="slow", accepted_at=at(0), relay="slow"))
    await store.messages.enqueue(new_message(id="a1", accepted_at=at(1), relay="a"))
    mixed = new_message(id="mixed", accepted_at=at(2), to=["ann@slow.test"], relay="slow")
    await store.messages.enqueue(replace(mixed, recipients=[
        *mixed.recipients, NewRecipient("bob@b.test", "to", "b")]))
    await store.messages.enqueue(new_message(id="b1", accepted_at=at(3), relay="b"))
    await store.messages.enqueue(new_message(id="a2", accepted_at=at(4), relay="a"))
    await store.messages.enqueue(new_message(id="later", accepted_at=at(30), relay="a"))

    first = await store.messages.claim_due("w", at(10), at(10) + LEASE, 3, busy={"slow"})
    rest = await store.messages.claim_due("w", at(10), at(10) + LEASE, 10, busy={"slow"})

    assert [c.message.id for c in first] == ["a1", "mixed", "b1"]
    assert [c.message.id for c in rest] == ["a2"]
    assert all(c.message.status is MessageStatus.SENDING for c in [*first, *rest])


async def test_mail_a_retry_moved_off_a_busy_relay_is_claimed(store: Store) -> None:
    """A retry that reroutes every recipient moves the message's one relay with them:
    a claim skipping the old relay finds it under the new one."""
    message = new_message(id="moved", to=("a@corp.test",), relay="slow")
    await store.messages.enqueue(message)
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 10)
    await store.messages.record_attempts([finished(
        claim, MessageStatus.FAILED, updates=[RecipientUpdate(
            "a@corp.test", RecipientStatus.FAILED, 550, "5.7.1", "no", "x")])])

    await store.messages.retry("moved", at(2), reroute={"a@corp.test": "fast"})

    claims = await store.messages.claim_due("w", at(3), at(3) + LEASE, 10, busy={"slow"})
    assert [c.message.id for c in claims] == ["moved"]
    assert [r.relay for r in claims[0].message.recipients] == ["fast"]


async def test_concurrent_claimers_past_busy_relays_take_each_message_once(
        store: Store, open_stores: OpenStore) -> None:
    """Each relay's mail is read, and on PostgreSQL locked, on its own before the claim
    takes the oldest of all: claimers side by side still take every message once."""
    wanted = []
    for n in range(300):
        relay = ("a", "b", "c", "slow")[n % 4]
        message = new_message(accepted_at=at(n % 50), relay=relay)
        await store.messages.enqueue(message)
        if relay != "slow":
            wanted.append(message.id)
    stores = [await open_stores() for _ in range(4)]

    results = await asyncio.gather(*(claim_until_empty(s, f"w{i}", busy={"slow"})
                                     for i, s in enumerate(stores)))

    claimed = [id for result in results for id in result]
    assert sorted(claimed) == sorted(wanted)
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert sum(1 for result in results if result) >= 2, "the claimers should have raced"


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgresql_runs_outbox_statements_without_jit(store: Store) -> None:
    """Every pooled connection turns PostgreSQL's JIT off (store/postgres.py): a claim
    over a big queue was estimated past jit_above_cost and spent 7 ms compiling a
    statement that ran in 0.06 ms. This pins that Outbox asks for it."""

    def shown(conn: Any) -> str:
        return str(conn.exec_driver_sql("SHOW jit").scalar())

    assert await store._run.read(shown) == "off"  # type: ignore[attr-defined]
    assert await store._run.write(shown) == "off"  # type: ignore[attr-defined]
