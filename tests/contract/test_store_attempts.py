"""record_attempts: a compare-and-set on the claim token, one transaction per batch."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from outbox.core.model import Event, EventType, MessageStatus, RecipientStatus, RecipientUpdate
from outbox.store.base import Store
from outbox.store.sql.queries import insert_events
from tests.contract.support import LEASE, at, finished, new_message, recover


async def test_a_sent_attempt_is_recorded_in_full(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1", to=["a@example.com", "b@example.com"]))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    record = finished(claim, MessageStatus.SENT, finished_at=at(3))

    assert await store.messages.record_attempts([record]) == [True]

    detail = await store.messages.get("m1")
    message = detail.message
    assert (message.status, message.attempts, message.due_at) == (MessageStatus.SENT, 1, None)
    assert message.updated_at == at(3)
    assert [(r.status, r.reply_code, r.enhanced_code, r.reply, r.guidance)
            for r in message.recipients] == [
        (RecipientStatus.SENT, 250, "2.0.0", "reply text", "guidance.key")] * 2
    assert detail.events[-3:] == tuple(record.events)
    (attempt,) = await store.messages.attempts("m1")
    assert (attempt.number, attempt.relay, attempt.outcome) == (1, "default", "sent")
    assert (attempt.started_at, attempt.finished_at) == (at(1), at(3))
    assert attempt.transcript == record.transcript
    assert await store.messages.renew_leases("w", {claim.token}, at(999)) == 0, \
        "the claim is over"


async def test_a_deferred_attempt_comes_back_when_due(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)

    await store.messages.record_attempts([finished(claim, MessageStatus.DEFERRED, due_at=at(120))])

    assert (await store.messages.get("m1")).message.due_at == at(120)
    assert await store.messages.claim_due("w", at(119), at(200), 5) == []
    (again,) = await store.messages.claim_due("w", at(120), at(200), 5)
    assert again.attempt == 2


async def test_an_attempt_that_does_not_count_keeps_the_count(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)

    await store.messages.record_attempts([finished(claim, MessageStatus.DEFERRED, due_at=at(5),
                                                   count_attempt=False)])

    assert (await store.messages.get("m1")).message.attempts == 0


async def test_a_stale_token_is_rejected_and_writes_nothing(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))
    (lost,) = await store.messages.claim_due("slow", at(1), at(10), 1)
    await recover(store, at(11), hold=False)
    (current,) = await store.messages.claim_due("fast", at(11), at(11) + LEASE, 1)
    before = await store.messages.get("m1")

    results = await store.messages.record_attempts([finished(lost, MessageStatus.SENT)])

    assert results == [False]
    assert await store.messages.get("m1") == before
    assert await store.messages.attempts("m1") == []
    assert await store.messages.record_attempts([finished(current, MessageStatus.SENT)]) == [True]


async def test_a_batch_is_judged_record_by_record(store: Store) -> None:
    for id in ("m1", "m2", "m3"):
        await store.messages.enqueue(new_message(id=id))
    c1, c2, c3 = await store.messages.claim_due("w", at(1), at(1) + LEASE, 3)
    forged = finished(c2, MessageStatus.SENT, token="not-the-token")

    results = await store.messages.record_attempts([finished(c1, MessageStatus.SENT), forged,
                                                    finished(c3, MessageStatus.FAILED)])

    assert results == [True, False, True]
    statuses = [(await store.messages.get(id)).message.status for id in ("m1", "m2", "m3")]
    assert statuses == [MessageStatus.SENT, MessageStatus.SENDING, MessageStatus.FAILED]
    assert [e.type for e in (await store.messages.get("m2")).events] == [EventType.QUEUED,
                                                                         EventType.CLAIMED]


async def test_each_record_of_a_batch_writes_its_own_values(store: Store) -> None:
    """One batch, written in one statement per table: each message, attempt and
    recipient gets the values of its own record, none of another's."""
    for id in ("m1", "m2", "m3"):
        await store.messages.enqueue(new_message(id=id, to=[f"{id}@example.com"]))
    c1, c2, c3 = await store.messages.claim_due("w", at(1), at(1) + LEASE, 3)
    sent = finished(c1, MessageStatus.SENT, finished_at=at(3))
    deferred = finished(c2, MessageStatus.DEFERRED, due_at=at(60), finished_at=at(4),
                        count_attempt=False)
    held = replace(finished(c3, MessageStatus.HELD, finished_at=at(5), hold_reason="auth",
                            held_for_relay=True), relay="smarthost", transcript="AUTH\n535")

    assert await store.messages.record_attempts([sent, deferred, held]) == [True] * 3

    m1, m2, m3 = [(await store.messages.get(id)).message for id in ("m1", "m2", "m3")]
    assert (m1.status, m1.attempts, m1.due_at, m1.updated_at) == (
        MessageStatus.SENT, 1, None, at(3))
    assert (m2.status, m2.attempts, m2.due_at, m2.updated_at) == (
        MessageStatus.DEFERRED, 0, at(60), at(4))
    assert (m3.status, m3.attempts, m3.hold_reason, m3.updated_at) == (
        MessageStatus.HELD, 1, "auth", at(5))
    assert await store.messages.release_relay("default", at(9)) == 0, "held for its relay"
    assert await store.messages.release_relay("smarthost", at(9)) == 1
    assert (await store.messages.get("m3")).message.held_seconds == 4.0, "held since at(5)"
    assert [(r.address, r.status, r.reply_code) for m in (m1, m2, m3) for r in m.recipients] == [
        ("m1@example.com", RecipientStatus.SENT, 250),
        ("m2@example.com", RecipientStatus.DEFERRED, 451),
        ("m3@example.com", RecipientStatus.PENDING, 451)]
    attempts = [(a.relay, a.finished_at, a.outcome, a.transcript)
                for id in ("m1", "m2", "m3") for a in await store.messages.attempts(id)]
    assert attempts == [("default", at(3), "sent", "EHLO outbox\n250 ok"),
                        ("default", at(4), "deferred", "EHLO outbox\n250 ok"),
                        ("smarthost", at(5), "held", "AUTH\n535")]


async def test_a_claim_ends_with_its_first_record(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    record = finished(claim, MessageStatus.DEFERRED, due_at=at(60))

    assert await store.messages.record_attempts([record, record]) == [True, False]
    assert await store.messages.record_attempts([record]) == [False]
    assert len(await store.messages.attempts("m1")) == 1


async def test_only_the_named_recipients_change(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1", to=["a@example.com", "b@example.com"]))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    update = RecipientUpdate("b@example.com", RecipientStatus.FAILED, 550, "5.1.1",
                             "no such user", "recipient.unknown")

    await store.messages.record_attempts([finished(claim, MessageStatus.DEFERRED, due_at=at(9),
                                                   updates=[update])])

    a, b = (await store.messages.get("m1")).message.recipients
    assert (a.status, a.reply_code) == (RecipientStatus.PENDING, None)
    assert (b.status, b.reply_code, b.enhanced_code, b.reply, b.guidance) == (
        RecipientStatus.FAILED, 550, "5.1.1", "no such user", "recipient.unknown")


async def test_many_recipients_with_one_outcome_and_some_with_others_each_get_theirs(
        store: Store) -> None:
    """A relay-wide deferral gives 1,200 recipients the same outcome (written in one
    statement, the addresses bound as one list); three others fail, one each; one is not
    named. An address with quotes and a backslash is matched as it is."""
    to = ['"o\\neil, \\"x"@example.com', *(f"r{n}@example.com" for n in range(1, 1204))]
    await store.messages.enqueue(new_message(id="big", to=to))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    deferred = [RecipientUpdate(a, RecipientStatus.DEFERRED, 421, "4.3.2", "busy", "smtp.421")
                for a in to[:1200]]
    failed = [RecipientUpdate(a, RecipientStatus.FAILED, 550, "5.1.1", f"no {a}", "unknown")
              for a in to[1200:1203]]

    await store.messages.record_attempts([finished(claim, MessageStatus.DEFERRED, due_at=at(9),
                                                   updates=[*failed, *deferred])])

    got = {r.address: (r.status, r.reply_code, r.enhanced_code, r.reply, r.guidance)
           for r in (await store.messages.get("big")).message.recipients}
    assert [got[a] for a in to[:1200]] == [
        (RecipientStatus.DEFERRED, 421, "4.3.2", "busy", "smtp.421")] * 1200
    assert [got[a] for a in to[1200:1203]] == [
        (RecipientStatus.FAILED, 550, "5.1.1", f"no {a}", "unknown") for a in to[1200:1203]]
    assert got[to[1203]] == (RecipientStatus.PENDING, None, None, None, None)


async def test_attempts_are_listed_in_order(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))
    for n in range(3):
        (claim,) = await store.messages.claim_due("w", at(10 * n), at(10 * n) + LEASE, 1)
        await store.messages.record_attempts([finished(claim, MessageStatus.DEFERRED,
                                                       due_at=at(10 * (n + 1)))])

    assert [a.number for a in await store.messages.attempts("m1")] == [1, 2, 3]
    assert (await store.messages.get("m1")).message.attempts == 3


async def test_events_read_back_as_written_whatever_the_path_that_stored_them(
        store: Store) -> None:
    """SQLite stores events no webhook subscribes to through the driver's executemany
    (sql/webhook_events.py); they must read back exactly as the SQLAlchemy path's do."""
    message = new_message(id="m1")
    await store.messages.enqueue(message)
    moment = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    written = [Event(at=moment + timedelta(microseconds=i), type=EventType.CLAIMED,
                     attempt=i, recipient=f"r{i}@example.com" if i % 2 else None,
                     reply_code=421 if i == 3 else None, enhanced_code="4.4.2" if i == 3 else None,
                     reply="gone" if i == 3 else None, guidance="wait" if i == 3 else None,
                     detail=f"detail {i}") for i in range(5)]

    pairs = [("m1", e) for e in written]
    await store._run.write(insert_events, pairs)  # type: ignore[attr-defined]

    found = [e for e in (await store.messages.get("m1")).events if e.type is EventType.CLAIMED]
    assert found == written


async def test_results_and_the_next_claim_go_in_one_call(store: Store) -> None:
    """record_and_claim: what the delivery loop calls while mail is waiting. The results
    are written as record_attempts writes them, then the claim is made as claim_due makes
    it, in the same transaction: a message the results send back to the queue (due now)
    can be claimed again at once."""
    for id in ("m1", "m2", "m3", "m4", "m5"):
        await store.messages.enqueue(new_message(id=id))
    c1, c2, c3 = await store.messages.claim_due("w", at(1), at(1) + LEASE, 3)
    records = [finished(c1, MessageStatus.SENT, finished_at=at(2)),
               finished(c2, MessageStatus.DEFERRED, due_at=at(2)),
               finished(c3, MessageStatus.SENT, token="not-the-token")]

    results, claims = await store.messages.record_and_claim(records, "w", at(3), at(3) + LEASE, 5)

    assert results == [True, True, False]
    assert sorted(claim.message.id for claim in claims) == ["m2", "m4", "m5"]
    held = (await store.messages.get("m3")).message
    assert held.claim is not None and held.claim.owner == "w", "its record was refused"
    assert {claim.owner for claim in claims} == {"w"}
    assert len({claim.token for claim in claims}) == 3
    assert {claim.lease_until for claim in claims} == {at(3) + LEASE}
    again = next(claim for claim in claims if claim.message.id == "m2")
    assert again.attempt == 2
    assert (await store.messages.get("m1")).message.status is MessageStatus.SENT
    assert [a.outcome for a in await store.messages.attempts("m2")] == ["deferred"]
    for claim in claims:
        detail = await store.messages.get(claim.message.id)
        assert detail.message.status is MessageStatus.SENDING
        assert detail.events[-1].type is EventType.CLAIMED
    assert await store.messages.record_attempts(
        [finished(claim, MessageStatus.SENT) for claim in claims]) == [True] * 3


async def test_a_claim_with_results_can_ask_for_a_full_batch_due(store: Store) -> None:
    """at_least: a worker for backlogs claims only while that many are due. With fewer,
    the results are written all the same and nothing is claimed."""
    for id in ("m1", "m2", "m3"):
        await store.messages.enqueue(new_message(id=id))
    (c1,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)

    results, claims = await store.messages.record_and_claim(
        [finished(c1, MessageStatus.SENT)], "w", at(3), at(3) + LEASE, 5, at_least=3)

    assert (results, claims) == ([True], [])
    assert (await store.messages.get("m1")).message.status is MessageStatus.SENT
    assert (await store.messages.get("m2")).message.status is MessageStatus.QUEUED
    results, claims = await store.messages.record_and_claim([], "w", at(3), at(3) + LEASE, 5,
                                                            at_least=2)
    assert results == [] and sorted(c.message.id for c in claims) == ["m2", "m3"]
