"""`stats(now)`'s `due_by_relay`: per relay, the mail due by `now` that no worker has
claimed, what `outbox relay ls` and `outbox doctor` show of mail waiting for a relay's
room (worker/relay_room.py). Claimed, held, not yet due and delivered mail is not
waiting; a message counts once for each relay it still has a recipient for. And its
`sending_by_relay`: per relay, the mail a worker has taken, which `relay ls` shows for a
relay none of whose attempts has finished yet (not "idle")."""

from __future__ import annotations

from dataclasses import replace

from outbox.core.model import Hold, MessageStatus, RecipientStatus, RecipientUpdate
from outbox.store.base import RelayDue, Store
from outbox.store.values import Claim, NewRecipient
from tests.contract.support import LEASE, at, finished, new_message


async def enqueue_both(store: Store) -> None:
    """Message `both`, accepted at 0: ann through relay slow, bob through relay fast."""
    both = new_message(id="both", accepted_at=at(0), to=["ann@slow.test"], relay="slow")
    await store.messages.enqueue(replace(both, recipients=[
        *both.recipients, NewRecipient("bob@fast.test", "to", "fast")]))


async def defer_ann_send_bob(store: Store, claim: Claim) -> None:
    """`both`'s attempt: bob sent through fast, ann deferred to 30 on slow."""
    await store.messages.record_attempts([finished(
        claim, MessageStatus.DEFERRED, due_at=at(30),
        updates=[RecipientUpdate("ann@slow.test", RecipientStatus.DEFERRED, 451, "4.3.0",
                                 "later", "x"),
                 RecipientUpdate("bob@fast.test", RecipientStatus.SENT, 250, "2.0.0",
                                 "ok", "sent")])])


async def test_stats_at_a_time_counts_each_relays_unclaimed_due_mail(store: Store) -> None:
    for n in range(3):
        await store.messages.enqueue(new_message(id=f"slow{n}", accepted_at=at(n),
                                                 to=[f"s{n}@slow.test", f"t{n}@slow.test"],
                                                 relay="slow"))
    both = new_message(id="both", accepted_at=at(4), to=["ann@slow.test"], relay="slow")
    await store.messages.enqueue(replace(both, recipients=[
        *both.recipients, NewRecipient("bob@fast.test", "to", "fast")]))
    await store.messages.enqueue(new_message(id="later", accepted_at=at(60), relay="slow"))
    await store.messages.enqueue(new_message(id="held", accepted_at=at(0), relay="slow",
                                             hold=Hold("policy")))
    await store.messages.enqueue(new_message(id="claimed", accepted_at=at(-9), relay="slow"))
    (claimed,) = await store.messages.claim_due("w", at(-9), at(-9) + LEASE, 1)
    assert claimed.message.id == "claimed"

    stats = await store.messages.stats(at(10))

    assert stats.due_by_relay == {"slow": RelayDue(4, at(0)), "fast": RelayDue(1, at(4))}
    assert stats.by_status["queued"] == 5  # the figures without `now` are unchanged
    assert (await store.messages.stats()).due_by_relay == {}


async def test_a_deferred_message_waits_only_for_the_relays_it_has_left(store: Store) -> None:
    """Due again after a deferral, it waits for the relay of its deferred recipient, not
    for the one that took the other."""
    await enqueue_both(store)
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 10)
    await defer_ann_send_bob(store, claim)

    assert (await store.messages.stats(at(29))).due_by_relay == {}
    assert (await store.messages.stats(at(45))).due_by_relay == {"slow": RelayDue(1, at(30))}


async def test_stats_at_a_time_counts_each_relays_mail_being_sent(store: Store) -> None:
    await enqueue_both(store)
    await store.messages.enqueue(new_message(id="slow1", accepted_at=at(1), relay="slow"))
    await store.messages.enqueue(new_message(id="queued", accepted_at=at(60), relay="slow"))
    claims = await store.messages.claim_due("w", at(2), at(2) + LEASE, 10)
    assert {c.message.id for c in claims} == {"both", "slow1"}

    stats = await store.messages.stats(at(3))
    assert stats.sending_by_relay == {"slow": 2, "fast": 1}
    assert (await store.messages.stats()).sending_by_relay == {}

    (done,) = [c for c in claims if c.message.id == "both"]
    await defer_ann_send_bob(store, done)
    assert (await store.messages.stats(at(4))).sending_by_relay == {"slow": 1}
