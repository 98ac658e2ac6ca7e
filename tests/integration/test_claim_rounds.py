"""How often a worker claims: a claim is a write transaction, on SQLite the one writer's.

When mail trickles in (one message at a time, each delivered before the next arrives), a
claim round that got fewer messages than it asked for has taken everything due, so the
worker waits for new mail instead of claiming again at once; an immediate second claim
would find nothing, once per message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.pg import database
from tests.processes import wait_until_async
from tests.smtpd import ScriptedServer, delay

from outbox.config import RelaySettings, Settings
from outbox.core.compose import Submission
from outbox.core.model import MessageStatus
from outbox.service import Outbox
from outbox.service.messages import BatchItem, Submitted
from outbox.worker import loop
from outbox.worker.attempt import Attempt

MESSAGES = 20


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


def at_the_defaults(server: ScriptedServer, db_url: str) -> Settings:
    """Production defaults, one relay to `server`, and an EHLO name (no DNS lookup of
    this host)."""
    relay = RelaySettings(name="r", host=server.host, port=server.port, security="none")
    return Settings(database={"url": db_url}, relays=[relay],
                    delivery={"helo_name": "client.test"})


async def test_mail_that_trickles_in_is_claimed_once_a_message(db_url: str) -> None:
    with ScriptedServer() as server:
        settings = at_the_defaults(server, db_url)
        outbox = await Outbox.open(settings)
        rounds: list[int] = []  # messages each claim round got
        claim_due = outbox.store.messages.claim_due

        async def counted(*args: Any, **kwargs: Any) -> Any:
            claims = await claim_due(*args, **kwargs)
            rounds.append(len(claims))
            return claims

        outbox.store.messages.claim_due = counted  # type: ignore[method-assign]
        worker = outbox.start_delivery()
        task = asyncio.create_task(worker.run())
        try:
            started = time.monotonic()
            for n in range(MESSAGES):
                accepted = await outbox.messages.submit(Submission(
                    sender="app@example.test", to=f"r{n}@example.test", subject=f"#{n}",
                    text="hello"))

                async def sent(id: str = accepted.message.id) -> bool:
                    message = (await outbox.messages.get(id)).message
                    return message.status is MessageStatus.SENT

                await wait_until_async(sent, f"message #{n} to be sent")
            elapsed = time.monotonic() - started
        finally:
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
    assert len(server.message_ids) == MESSAGES
    assert sum(rounds) == MESSAGES
    # One round a message, plus the idle rounds that end by poll_interval (1 s) and a
    # few where new mail woke the worker after an earlier round had already taken it.
    # Claiming again after every round that found mail would make it 2 a message.
    idle_polls = int(elapsed / settings.delivery.poll_interval.total_seconds()) + 1
    assert len(rounds) <= MESSAGES + idle_polls + MESSAGES // 4, rounds


async def test_a_worker_for_backlogs_claims_only_while_a_full_batch_is_due(
        db_url: str) -> None:
    """serve's second delivery process: it leaves mail that the first keeps up with alone,
    and joins once `batch_size` messages have been due for `loop.BACKLOG_AGE`. At the
    production defaults (a batch of 128, a look every second)."""
    with ScriptedServer() as server:
        settings = at_the_defaults(server, db_url)
        batch = settings.delivery.batch_size
        outbox = await Outbox.open(settings)
        looks: list[int] = []  # what each of its looks at the queue found due
        claimed_after: list[int] = []  # for each claim, what the look before it found
        count_due, claim_due = outbox.store.messages.count_due, outbox.store.messages.claim_due

        async def looking(*args: Any, **kwargs: Any) -> int:
            looks.append(await count_due(*args, **kwargs))
            return looks[-1]

        async def claiming(*args: Any, **kwargs: Any) -> Any:
            claimed_after.append(looks[-1] if looks else 0)
            return await claim_due(*args, **kwargs)

        outbox.store.messages.count_due = looking  # type: ignore[method-assign]
        outbox.store.messages.claim_due = claiming  # type: ignore[method-assign]
        ids = await submit_all(outbox, batch - 1)
        worker = outbox.start_delivery(for_backlogs=True)
        task = asyncio.create_task(worker.run())
        try:
            # New mail does not wake it, so these looks are its poll's.
            await wait_until_async(lambda: _true(len(looks) >= 3), "three looks")
            # A look before the mail has waited BACKLOG_AGE finds less of it, or none.
            assert max(looks) == looks[-1] == batch - 1
            assert claimed_after == []
            assert await statuses(outbox, ids) == {MessageStatus.QUEUED}
            assert not server.message_ids

            ids.append(await submit(outbox, batch))
            await wait_until_async(lambda: _true(bool(server.message_ids)), "a delivery")
            seen = len(looks)
            await wait_until_async(lambda: _true(len(looks) >= seen + 2), "two more looks")
        finally:
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
    assert claimed_after and all(due >= batch for due in claimed_after), claimed_after
    assert looks[-1] < batch  # what it took brought the queue under a batch: it stopped


async def test_a_full_batch_just_due_is_left_to_the_first_process_for_a_moment(
        db_url: str) -> None:
    """A full batch that has only just become due is no backlog yet: the first delivery
    process takes new mail within milliseconds, so the second waits until the mail has
    waited `loop.BACKLOG_AGE` unclaimed. Looking at the instant it was due, it joined at
    1,400 msg/s over HTTP and the two took a fifth more CPU a message (issue 15)."""
    with ScriptedServer() as server:
        settings = at_the_defaults(server, db_url)
        outbox = await Outbox.open(settings)
        claimed_at: list[float] = []
        claim_due = outbox.store.messages.claim_due

        async def claiming(*args: Any, **kwargs: Any) -> Any:
            claimed_at.append(time.time())  # the wall clock, as the messages' due times
            return await claim_due(*args, **kwargs)

        outbox.store.messages.claim_due = claiming  # type: ignore[method-assign]
        # Each message is due from its acceptance, after this: the rule puts the first
        # claim BACKLOG_AGE after the last one's, so at least that long after this.
        before = time.time()
        await submit_all(outbox, settings.delivery.batch_size)
        worker = outbox.start_delivery(for_backlogs=True)
        task = asyncio.create_task(worker.run())
        try:
            await wait_until_async(lambda: _true(bool(server.message_ids)), "a delivery")
        finally:
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
    assert claimed_at[0] - before >= loop.BACKLOG_AGE.total_seconds(), (before, claimed_at)


async def submit(outbox: Outbox, n: int) -> str:
    accepted = await outbox.messages.submit(Submission(
        sender="app@example.test", to=f"r{n}@example.test", subject=f"#{n}", text="hello"))
    return accepted.message.id


async def submit_all(outbox: Outbox, count: int) -> list[str]:
    """Messages #0 to #count-1 as `submit` makes them, in one call: 127 submits one by one
    took 0.25 s of CPU, one call 0.1 s."""
    submitted = await outbox.messages.submit_many([BatchItem(Submission(
        sender="app@example.test", to=f"r{n}@example.test", subject=f"#{n}", text="hello"))
        for n in range(count)])
    ids = [s.message.id for s in submitted if isinstance(s, Submitted)]
    assert len(ids) == count, submitted
    return ids


async def statuses(outbox: Outbox, ids: list[str]) -> set[MessageStatus]:
    """In one read, not one per message: `deliver_until_sent` asks 20 times a second,
    and 127 reads one by one took 0.15 s of CPU, one listing 6 ms."""
    found = {m.id: m.status for m in (await outbox.messages.list(limit=len(ids) + 1)).messages}
    return {found[id] for id in ids}


async def _true(value: bool) -> bool:
    return value


async def _all_sent(outbox: Outbox, ids: list[str]) -> bool:
    return await statuses(outbox, ids) == {MessageStatus.SENT}


async def deliver_until_sent(outbox: Outbox, ids: list[str]) -> None:
    """A worker of `outbox` until every message of `ids` is sent; then `outbox` closed."""
    worker = outbox.start_delivery()
    task = asyncio.create_task(worker.run())
    try:
        await wait_until_async(lambda: _all_sent(outbox, ids), f"all {len(ids)} to be sent")
    finally:
        worker.stop()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


async def test_a_worker_claims_no_more_content_than_it_may_hold(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its attempts hold each message's text, HTML and embedded files: it claims only as
    many as fit in `HELD_CONTENT`, and none while that is full, whether it claims on its
    own or with a batch of results (worker/recorder.py), or both at once. The budget is
    lowered to 1 MB (its default, 256 MiB, would take hundreds of large messages to fill:
    the unit tests in tests/unit/test_held_content.py hold the arithmetic at the
    default). Counted are the attempts running, the content held."""
    monkeypatch.setattr(loop, "HELD_CONTENT", 1_000_000)
    size = 300_000  # characters of text a message: at most 4 fit in 1 MB, the 4th past it
    running, peak = 0, 0
    run = Attempt.run

    async def counted(self: Attempt) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await run(self)
        finally:
            running -= 1

    monkeypatch.setattr(Attempt, "run", counted)
    with ScriptedServer(script=[delay("DATA", 0.3)]) as server:
        relay = RelaySettings(name="r", host=server.host, port=server.port, security="none",
                              max_connections=20)  # the relay would take all 10 at once
        settings = Settings(database={"url": db_url}, relays=[relay],
                            delivery={"helo_name": "client.test"})
        outbox = await Outbox.open(settings)
        ids = [(await outbox.messages.submit(Submission(
            sender="app@example.test", to=f"r{n}@example.test", subject=f"#{n}",
            text="x" * size))).message.id for n in range(10)]
        await deliver_until_sent(outbox, ids)
    assert len(server.message_ids) == 10
    assert 2 <= peak <= 4, peak


async def test_the_first_claim_takes_what_fits_were_each_message_as_large_as_allowed(
        db_url: str) -> None:
    """At the defaults: 256 MiB of content at most, 25 MB a message at most, so the first
    claim asks for 10; once it shows small mail, claims ask for a whole batch."""
    with ScriptedServer() as server:
        settings = at_the_defaults(server, db_url)
        outbox = await Outbox.open(settings)
        ids = await submit_all(outbox, 30)
        asked: list[int] = []
        claim_due = outbox.store.messages.claim_due
        record_and_claim = outbox.store.messages.record_and_claim

        async def claiming(owner: str, now: Any, lease_until: Any, limit: int,
                           **kwargs: Any) -> Any:
            asked.append(limit)
            return await claim_due(owner, now, lease_until, limit, **kwargs)

        async def riding(records: Any, owner: str, now: Any, lease_until: Any, limit: int,
                         *args: Any, **kwargs: Any) -> Any:
            asked.append(limit)  # a claim that took finished attempts' results along
            return await record_and_claim(records, owner, now, lease_until, limit, *args,
                                          **kwargs)

        outbox.store.messages.claim_due = claiming  # type: ignore[method-assign]
        outbox.store.messages.record_and_claim = riding  # type: ignore[method-assign]
        await deliver_until_sent(outbox, ids)
    assert len(server.message_ids) == 30
    # A whole batch, but for the relay's share (worker/relay_room.py: 128 at the
    # defaults) that the first claim's attempts may still hold.
    batch = settings.delivery.batch_size
    assert asked[0] == 10 and batch - 10 <= asked[1] <= batch, asked


async def test_a_backlog_is_claimed_with_the_results_that_make_room(db_url: str) -> None:
    """While mail is waiting (the last claim came back full), each batch of results is
    written in the transaction that claims as many messages as those results free: one
    transaction where a claim of its own made two. At the production defaults, at any
    timing: attempts may finish while the first claims still fill the worker's slots."""
    backlog = 700
    with ScriptedServer() as server:
        settings = at_the_defaults(server, db_url)
        outbox = await Outbox.open(settings)
        # In order: ("claim", messages) for a claim of its own, ("ride", results,
        # messages, limit) for a claim with results, ("record", results) for results alone.
        writes: list[tuple[int | str, ...]] = []
        messages = outbox.store.messages
        claim_due, record_and_claim = messages.claim_due, messages.record_and_claim
        record_attempts = messages.record_attempts

        async def claiming(*args: Any, **kwargs: Any) -> Any:
            claims = await claim_due(*args, **kwargs)
            writes.append(("claim", len(claims)))
            return claims

        async def riding(records: Any, *args: Any, **kwargs: Any) -> Any:
            results, claims = await record_and_claim(records, *args, **kwargs)
            writes.append(("ride", len(results), len(claims), args[3]))
            return results, claims

        async def recording(records: Any) -> Any:
            writes.append(("record", len(records)))
            return await record_attempts(records)

        messages.claim_due = claiming  # type: ignore[method-assign]
        messages.record_and_claim = riding  # type: ignore[method-assign]
        messages.record_attempts = recording  # type: ignore[method-assign]
        await outbox.messages.submit_many([BatchItem(Submission(
            sender="app@example.test", to=f"r{n}@example.test", subject=f"#{n}",
            text="hello")) for n in range(backlog)])
        worker = outbox.start_delivery()
        task = asyncio.create_task(worker.run())
        try:
            await wait_until_async(lambda: _true(len(server.message_ids) == backlog),
                                   "the backlog to be delivered", timeout=120)
        finally:
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
    assert len(set(server.message_ids)) == backlog  # each once
    claimed, all_claimed = 0, None
    for n, write in enumerate(writes):
        claimed += int(write[1 if write[0] == "claim" else 2]) if write[0] != "record" else 0
        if claimed == backlog and all_claimed is None:
            all_claimed = n
    assert claimed == backlog and all_claimed is not None, writes
    until_claimed = writes[:all_claimed + 1]
    # No results were written alone while mail was due.
    assert not [write for write in until_claimed if write[0] == "record"], writes
    # Claims of its own: the ones that fill the slots (10 messages of the largest size
    # allowed, then whole batches up to `concurrency`), and after those, only where a
    # claim with results could not take all the room they made (capped at batch_size).
    delivery = settings.delivery
    filling = 1 + -(-(delivery.concurrency - 10) // delivery.batch_size)
    capped = sum(1 for write in until_claimed
                 if write[0] == "ride" and write[3] == delivery.batch_size)
    own = [write for write in until_claimed if write[0] == "claim"]
    assert len(own) <= filling + capped, writes
    rides = [write for write in until_claimed if write[0] == "ride"]
    assert sum(int(write[2]) for write in rides) >= backlog - delivery.concurrency - \
        capped * delivery.batch_size, writes


async def test_a_worker_for_backlogs_claims_with_results_only_while_a_full_batch_is_due(
        db_url: str) -> None:
    """Its first claim of a full batch due takes what it can hold at first (10 messages of
    the largest size allowed); the claims that then ride with their results ask for a
    full batch due too (`at_least`), so the rest, under a batch, waits for the first
    delivery process. At the production defaults."""
    with ScriptedServer() as server:
        settings = at_the_defaults(server, db_url)
        batch = settings.delivery.batch_size
        outbox = await Outbox.open(settings)
        rides: list[tuple[int, int]] = []  # (at_least, messages claimed) of each
        record_and_claim = outbox.store.messages.record_and_claim

        async def riding(*args: Any, **kwargs: Any) -> Any:
            results, claims = await record_and_claim(*args, **kwargs)
            rides.append((kwargs.get("at_least", args[5] if len(args) > 5 else 0),
                          len(claims)))
            return results, claims

        alone: list[int] = []  # messages each claim of its own got
        claim_due = outbox.store.messages.claim_due

        async def claiming(*args: Any, **kwargs: Any) -> Any:
            alone.append(len(claims := await claim_due(*args, **kwargs)))
            return claims

        outbox.store.messages.record_and_claim = riding  # type: ignore[method-assign]
        outbox.store.messages.claim_due = claiming  # type: ignore[method-assign]
        await submit_all(outbox, batch)
        worker = outbox.start_delivery(for_backlogs=True)
        task = asyncio.create_task(worker.run())
        try:
            await wait_until_async(lambda: _true(bool(rides)), "a claim with results")
            await wait_until_async(lambda: _true(len(server.message_ids) == sum(alone)),
                                   "what it claimed to be sent")
            await asyncio.sleep(settings.delivery.poll_interval.total_seconds() * 2)
        finally:
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
    assert alone == [alone[0]] and 0 < alone[0] < batch, alone  # one claim, then no more
    assert len(server.message_ids) == alone[0]
    assert rides and all(ride == (batch, 0) for ride in rides), rides
