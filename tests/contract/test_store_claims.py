"""claim_due, renew_leases, wait_for_new; claims never overlap."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from outbox.core.content import AttachmentRef, EmbeddedFile
from outbox.core.model import EventType, MessageStatus, RecipientStatus, RecipientUpdate
from outbox.store.base import Claim, Store
from tests.contract.conftest import OpenStore
from tests.contract.support import (
    HELD,
    LEASE,
    T0,
    at,
    claim_until_empty,
    enqueue_many,
    finished,
    new_message,
    recover,
)


async def test_claim_takes_due_messages_oldest_due_first_up_to_the_limit(store: Store) -> None:
    for i, seconds in enumerate([30, 10, 20, 40]):
        await store.messages.enqueue(new_message(id=f"m{i}", accepted_at=at(seconds)))
    await store.messages.enqueue(new_message(id="held", accepted_at=at(0),
                                             hold=HELD))

    first = await store.messages.claim_due("w1", at(35), at(35) + LEASE, 2)
    second = await store.messages.claim_due("w1", at(35), at(35) + LEASE, 10)
    third = await store.messages.claim_due("w1", at(35), at(35) + LEASE, 10)

    assert [c.message.id for c in first] == ["m1", "m2"]
    assert [c.message.id for c in second] == ["m0"]  # m3 is not due until 40 s
    assert third == []
    fourth = await store.messages.claim_due("w1", at(40), at(99), 10)
    assert [c.message.id for c in fourth] == ["m3"]


async def test_a_claim_carries_owner_token_lease_and_a_claimed_event(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))

    (claim,) = await store.messages.claim_due("worker-a", at(1), at(301), 5)
    detail = await store.messages.get("m1")

    assert (claim.owner, claim.lease_until, claim.attempt) == ("worker-a", at(301), 1)
    assert claim.token
    assert claim.message.status is MessageStatus.SENDING and claim.message.due_at is None
    assert detail.message.status is MessageStatus.SENDING and detail.message.due_at is None
    assert [(e.type, e.at, e.attempt) for e in detail.events][-1] == (EventType.CLAIMED, at(1), 1)
    assert await store.messages.claim_due("worker-b", at(10**6), at(10**6) + LEASE, 5) == []


async def test_a_claimed_message_is_the_message_as_stored(store: Store) -> None:
    """Every field, as `get` reads it back: SQLite builds a claim's messages after its
    transaction from the rows as the driver gave them (store/sqlite_claim.py)."""
    message = new_message(id="m1", to=["a@example.com", "B <b@example.com>"])
    content = replace(message.content, cc=("c@example.com",), reply_to=("r@example.com",),
                      html="<p>Hi</p>", attachments=(
                          AttachmentRef("a.pdf", "application/pdf", "ab" * 32, 12),
                          EmbeddedFile("b.txt", "text/plain", "aGk=")))
    await store.messages.enqueue(replace(message, content=content,
                                         metadata={"order": 7, "tags": ["x", "é"]}))

    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    stored = (await store.messages.get("m1")).message

    assert claim.message == stored
    assert claim.message.content == content
    assert claim.message.metadata == {"order": 7, "tags": ["x", "é"]}
    assert claim.message.claim is not None and claim.message.claim.lease_until == at(1) + LEASE
    assert claim.message.created_at == T0 and claim.message.created_at.tzinfo is not None
    assert [r.address for r in claim.message.recipients] == ["a@example.com", "B <b@example.com>"]


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL builds them in the transaction
async def test_a_claimed_row_that_cannot_be_read_is_left_out_not_raised(
        store: Store, db_url: str) -> None:
    """SQLite builds a claim's messages after it commits: a row that does not read as a
    message (its content corrupted behind Outbox's back) is left for recovery, and the
    others of the claim, and the results written with it, stand."""
    await store.messages.enqueue(new_message(id="bad", accepted_at=at(0)))
    await store.messages.enqueue(new_message(id="good", accepted_at=at(1)))
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as raw:
        raw.execute("UPDATE messages SET content = '{not json' WHERE id = 'bad'")

    claims = await store.messages.claim_due("w", at(5), at(5) + LEASE, 10)

    assert [c.message.id for c in claims] == ["good"]
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as raw:
        (status,) = raw.execute("SELECT status FROM messages WHERE id = 'bad'").fetchone()
    assert status == MessageStatus.SENDING.value  # claimed: recovery gives it back


async def test_each_claim_gets_a_fresh_token(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))
    (first,) = await store.messages.claim_due("w", at(1), at(2), 1)
    await recover(store, at(3), hold=False)

    (second,) = await store.messages.claim_due("w", at(3), at(4), 1)

    assert second.token != first.token


async def test_a_claim_carries_every_recipient_with_its_status(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1", to=["a@example.com", "b@example.com",
                                                          "c@example.com"]))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    updates = [RecipientUpdate("a@example.com", RecipientStatus.SENT, 250),
               RecipientUpdate("b@example.com", RecipientStatus.DEFERRED, 451),
               RecipientUpdate("c@example.com", RecipientStatus.FAILED, 550)]
    await store.messages.record_attempts([finished(claim, MessageStatus.DEFERRED, due_at=at(60),
                                                   updates=updates)])

    (again,) = await store.messages.claim_due("w", at(60), at(60) + LEASE, 1)

    assert [(r.address, r.status, r.reply_code) for r in again.message.recipients] == [
        ("a@example.com", RecipientStatus.SENT, 250),
        ("b@example.com", RecipientStatus.DEFERRED, 451),
        ("c@example.com", RecipientStatus.FAILED, 550)]
    assert again.attempt == 2


async def test_claims_stay_in_due_order_across_many_messages(store: Store) -> None:
    ids = await enqueue_many(store, 30)

    claims = await store.messages.claim_due("w", at(60), at(60) + LEASE, 30)

    assert [c.message.id for c in claims] == ids


async def test_concurrent_claimers_take_every_message_exactly_once(
        store: Store, open_stores: OpenStore) -> None:
    ids = await enqueue_many(store, 500)
    stores = [await open_stores() for _ in range(4)]

    results = await asyncio.gather(*(claim_until_empty(s, f"w{i}")
                                     for i, s in enumerate(stores)))

    claimed = [id for result in results for id in result]
    assert sorted(claimed) == sorted(ids)
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert sum(1 for result in results if result) >= 2, "the claimers should have raced"
    assert (await store.messages.stats()).by_status["sending"] == 500


CLAIMER = """
import asyncio, json, sys
from datetime import datetime, timedelta
from outbox.store.factory import open_store

async def main(url, owner, now):
    store = await open_store(url)
    now = datetime.fromisoformat(now)
    print("ready", flush=True)
    sys.stdin.readline()
    claimed = []
    while claims := await store.messages.claim_due(owner, now, now + timedelta(minutes=5), 5):
        claimed += [c.message.id for c in claims]
    await store.close()
    print(json.dumps(claimed), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


async def _start_claimer(url: str, owner: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLAIMER, url, owner, at(60).isoformat(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)


async def _ready(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    assert (await process.stdout.readline()).strip() == b"ready"


async def _result(process: asyncio.subprocess.Process) -> list[str]:
    out, _ = await process.communicate()
    assert process.returncode == 0
    return list(json.loads(out.decode().strip().splitlines()[-1]))


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL: the test above, 4 engines
async def test_claimers_in_separate_processes_never_share_a_message(
        db_url: str, store: Store) -> None:
    processes = [await _start_claimer(db_url, f"p{i}") for i in range(2)]
    ids = await enqueue_many(store, 500)
    await asyncio.gather(*(_ready(p) for p in processes))

    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
    mine = await claim_until_empty(store, "parent")
    results = [await _result(p) for p in processes]

    claimed = mine + [id for result in results for id in result]
    assert sorted(claimed) == sorted(ids)
    assert len(set(claimed)) == len(claimed)


async def test_renew_leases_extends_only_the_owners_running_claims(store: Store) -> None:
    await enqueue_many(store, 4)
    mine = await store.messages.claim_due("me", at(1), at(10), 3)
    (other,) = await store.messages.claim_due("other", at(1), at(10), 1)
    running = {mine[0].token}  # the attempts of mine[1:] ended in a crash: orphans

    renewed = await store.messages.renew_leases("me", running | {other.token}, at(100))
    stale = await recover(store, at(50), hold=False)

    assert renewed == 1, "neither the orphans nor another owner's claim"
    assert sorted(stale) == sorted([c.message.id for c in mine[1:]] + [other.message.id])
    assert await store.messages.renew_leases("nobody", running, at(100)) == 0
    assert await store.messages.renew_leases("me", set(), at(100)) == 0


async def test_a_message_is_due_from_its_acceptance_and_a_held_one_never(store: Store) -> None:
    await store.messages.enqueue(new_message(id="later", accepted_at=at(20)))
    await store.messages.enqueue(new_message(id="earlier", accepted_at=at(5)))
    held = new_message(id="held", accepted_at=at(1), hold=HELD)
    await store.messages.enqueue(held)

    assert await store.messages.claim_due("w", at(4), at(4) + LEASE, 10) == []
    earlier = await store.messages.claim_due("w", at(5), at(5) + LEASE, 10)
    later = await store.messages.claim_due("w", at(10**6), at(10**6) + LEASE, 10)
    assert [c.message.id for c in earlier] == ["earlier"]
    assert [c.message.id for c in later] == ["later"]


async def test_wait_for_new_wakes_on_enqueue(store: Store) -> None:
    waiter = asyncio.create_task(store.messages.wait_for_new(30))
    await asyncio.sleep(0.05)
    await store.messages.enqueue(new_message())

    await asyncio.wait_for(waiter, 5)


async def test_wait_for_new_returns_after_the_timeout(store: Store) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()

    await store.messages.wait_for_new(0.1)

    assert 0.09 <= loop.time() - started < 2


async def test_wait_for_new_wakes_across_stores(store: Store, open_stores: OpenStore) -> None:
    """As another process would (PostgreSQL: LISTEN/NOTIFY; SQLite: a datagram)."""
    other = await open_stores()
    await other.messages.wait_for_new(0.01)  # starts listening
    waiter = asyncio.create_task(other.messages.wait_for_new(30))
    await asyncio.sleep(0.05)

    await store.messages.enqueue(new_message())

    await asyncio.wait_for(waiter, 5)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_dead_process_s_wakeup_marker_is_removed(store: Store, db_url: str) -> None:
    workers = Path(db_url.removeprefix("sqlite:///") + "-workers")
    workers.mkdir(exist_ok=True)
    dead = workers / "99999999-0badf00d.wake"  # nobody listens at its address
    dead.touch()
    other = workers / "notes.txt"  # not a marker: left alone
    other.touch()

    await store.messages.enqueue(new_message())
    await asyncio.sleep(0)  # the other processes are told at the end of the loop's turn

    assert not dead.exists() and other.exists()


async def test_wait_for_new_wakes_on_retry_and_release(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1", hold=HELD))
    await store.messages.wait_for_new(0)  # nothing pending before the test proper
    waiter = asyncio.create_task(store.messages.wait_for_new(30))
    await asyncio.sleep(0.05)

    await store.messages.retry("m1", at(1))

    await asyncio.wait_for(waiter, 5)
    claims: list[Claim] = await store.messages.claim_due("w", at(1), at(2), 1)
    assert [c.message.id for c in claims] == ["m1"]


async def test_a_zero_limit_claims_nothing(store: Store) -> None:
    await store.messages.enqueue(new_message())
    day = timedelta(days=1)
    assert await store.messages.claim_due("w", T0 + day, T0 + 2 * day, 0) == []


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_announcements_of_one_loop_turn_reach_another_process_as_one(
        store: Store, open_stores: OpenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The submits of one group commit announce in one turn of the event loop: the
    other processes' markers are listed, and each poked, once for them all."""
    other = await open_stores()
    await other.messages.wait_for_new(0.01)  # starts listening
    wakeup: Any = store.messages._wakeup  # type: ignore[attr-defined]
    poked: list[str] = []
    poke = wakeup._poke
    monkeypatch.setattr(wakeup, "_poke", lambda name: (poked.append(name), poke(name)))
    waiter = asyncio.create_task(other.messages.wait_for_new(30))
    await asyncio.sleep(0.05)

    for _ in range(20):  # as 20 submits returning from one commit
        wakeup.announce()
    assert poked == []
    await asyncio.wait_for(waiter, 5)

    assert len(poked) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_an_announcement_made_just_before_closing_still_reaches_another_process(
        store: Store, open_stores: OpenStore) -> None:
    """close() sends what this turn of the loop announced, and the turn's end sends
    nothing more (nor opens a socket again)."""
    other = await open_stores()
    await other.messages.wait_for_new(0.01)  # starts listening
    waiter = asyncio.create_task(other.messages.wait_for_new(30))
    await asyncio.sleep(0.05)
    wakeup: Any = store.messages._wakeup  # type: ignore[attr-defined]

    wakeup.announce()
    await wakeup.close()

    await asyncio.wait_for(waiter, 5)
    await asyncio.sleep(0)
    assert wakeup._sender is None
