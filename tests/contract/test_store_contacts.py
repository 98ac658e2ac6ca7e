"""The address-book verbs on both backends: contacts, batch changes, groups (nested,
cycles), aliases, the slice a submission needs, usage ranking and autocomplete."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from outbox.core.contacts import (
    HALF_LIFE,
    Alias,
    ContactChanges,
    Group,
    Member,
    NewContact,
    Source,
    SyncState,
    add_use,
    address_key,
    use_weight,
)
from outbox.core.model import Hold, MessageStatus
from outbox.errors import Conflict, InputError, NotFound
from outbox.service.contacts import USAGE_CHUNK, UsageRecorder
from outbox.store.base import Store
from outbox.store.tables import address_usage, contact_terms
from tests.contract.support import T0, at, new_message
from tests.processes import wait_until_async

ANN = NewContact("Ann Lee", ("ann@corp.test", "Ann.Lee@Home.test"), ("staff", "ops"))
BOB = NewContact("Bob Stone", ("bob@corp.test",))


async def test_a_contact_is_added_read_replaced_and_deleted(store: Store) -> None:
    added = await store.contacts.add_contact(ANN, at(0))
    assert (added.name, added.emails, added.tags, added.source) == (
        "Ann Lee", ("ann@corp.test", "Ann.Lee@Home.test"), ("staff", "ops"), Source.LOCAL)
    assert await store.contacts.get_contact(added.id) == added

    replaced = await store.contacts.replace_contact(
        added.id, NewContact("Ann Lee-Park", ("ann@corp.test",)), at(5))
    assert (replaced.name, replaced.emails, replaced.tags) == ("Ann Lee-Park", ("ann@corp.test",),
                                                               ())
    assert replaced.updated_at == at(5)

    await store.contacts.delete_contact(added.id)
    with pytest.raises(NotFound):
        await store.contacts.get_contact(added.id)
    with pytest.raises(NotFound):
        await store.contacts.delete_contact(added.id)
    with pytest.raises(NotFound):
        await store.contacts.replace_contact(added.id, BOB, at(6))


async def test_contacts_are_listed_by_id_in_pages_and_by_source(store: Store) -> None:
    ids = await store.contacts.apply_contact_changes(ContactChanges(add=(
        ANN, BOB, NewContact("Cy", ("cy@corp.test",), source=Source.LDAP, external_id="u-1"))),
        at(0))
    assert len(ids) == 3 and ids == sorted(ids)
    first = await store.contacts.list_contacts(limit=2)
    assert [c.id for c in first] == ids[:2]
    rest = await store.contacts.list_contacts(limit=2, after=first[-1].id)
    assert [c.name for c in rest] == ["Cy"]
    ldap = await store.contacts.list_contacts(source=Source.LDAP)
    assert [(c.name, c.external_id) for c in ldap] == [("Cy", "u-1")]


async def test_contacts_are_found_by_address_whatever_its_case(store: Store) -> None:
    await store.contacts.apply_contact_changes(ContactChanges(add=(ANN, BOB)), at(0))
    found = await store.contacts.find_contacts({address_key("ANN.LEE@home.TEST"), "nobody@x.test"})
    assert [c.name for c in found] == ["Ann Lee"]


async def test_changes_apply_together_merges_move_group_memberships(store: Store) -> None:
    ann, bob, dup = await store.contacts.apply_contact_changes(ContactChanges(add=(
        ANN, BOB, NewContact("A. Lee", ("ann@corp.test",)))), at(0))
    await store.contacts.save_group(Group("Team", (Member.contact(dup), Member.contact(bob))),
                                    at(0))

    state = SyncState("ldap", "20300101000000Z", at(9))
    await store.contacts.apply_contact_changes(ContactChanges(
        update=((ann, NewContact("Ann Lee", ANN.emails, ("staff",))),),
        merges=((ann, (dup,)),), remove=(bob,),
        add=(NewContact("Dee", ("dee@corp.test",)),), sync_state=state), at(10))

    names = [c.name for c in await store.contacts.list_contacts()]
    assert names == ["Ann Lee", "Dee"]
    assert (await store.contacts.get_group("team")).members == (Member.contact(ann),)
    assert await store.contacts.get_sync_state("ldap") == state
    assert await store.contacts.get_sync_state("other") is None


async def test_a_failed_change_set_changes_nothing(store: Store) -> None:
    (ann,) = await store.contacts.apply_contact_changes(ContactChanges(add=(ANN,)), at(0))
    with pytest.raises(NotFound):
        await store.contacts.apply_contact_changes(ContactChanges(
            add=(BOB,), update=((ann + 1000, BOB),)), at(1))
    assert [c.name for c in await store.contacts.list_contacts()] == ["Ann Lee"]


async def test_groups_hold_contacts_addresses_and_nested_groups(store: Store) -> None:
    ann = await store.contacts.add_contact(ANN, at(0))
    await store.contacts.save_group(Group("Ops", (Member.address("pager@corp.test"),), "on call"),
                                    at(0))
    saved = await store.contacts.save_group(Group("All Staff", (
        Member.contact(ann.id), Member.group("OPS"), Member.address("x@corp.test"))), at(1))
    assert saved.members == (Member.contact(ann.id), Member.group("Ops"),
                             Member.address("x@corp.test"))
    assert [(g.name, g.description) for g in await store.contacts.list_groups()] == [
        ("All Staff", ""), ("Ops", "on call")]

    await store.contacts.save_group(Group("all staff", (Member.address("y@corp.test"),)), at(2))
    assert (await store.contacts.get_group("All Staff")).members == (Member.address("y@corp.test"),)

    with pytest.raises(InputError) as caught:
        await store.contacts.save_group(Group("Bad", (Member.address("z@corp.test"),
                                                      Member.group("nope"))), at(3))
    assert caught.value.field == "members[1]"
    with pytest.raises(InputError):
        await store.contacts.save_group(Group("Bad", (Member.contact(ann.id + 99),)), at(3))
    with pytest.raises(NotFound):
        await store.contacts.get_group("Bad")


async def test_deleting_a_contact_or_group_removes_its_memberships(store: Store) -> None:
    ann = await store.contacts.add_contact(ANN, at(0))
    await store.contacts.save_group(Group("Ops", (Member.address("pager@corp.test"),)), at(0))
    await store.contacts.save_group(Group("All", (Member.contact(ann.id), Member.group("Ops"))),
                                    at(0))
    await store.contacts.delete_contact(ann.id)
    await store.contacts.delete_group("ops")
    assert (await store.contacts.get_group("All")).members == ()
    with pytest.raises(NotFound):
        await store.contacts.delete_group("ops")


async def test_aliases_are_saved_replaced_listed_and_deleted(store: Store) -> None:
    await store.contacts.save_alias(Alias("boss", ("Jane <jane@corp.test>",)), at(0))
    await store.contacts.save_alias(Alias("Support", ("a@corp.test", "b@corp.test")), at(0))
    await store.contacts.save_alias(Alias("BOSS", ("june@corp.test",)), at(1))
    assert await store.contacts.list_aliases() == [Alias("BOSS", ("june@corp.test",)),
                                                   Alias("Support", ("a@corp.test", "b@corp.test"))]
    await store.contacts.delete_alias("boss")
    with pytest.raises(NotFound):
        await store.contacts.delete_alias("boss")


async def test_the_book_slice_holds_named_things_nested_groups_and_their_contacts(
        store: Store) -> None:
    ann = await store.contacts.add_contact(ANN, at(0))
    bob = await store.contacts.add_contact(BOB, at(0))
    await store.contacts.save_group(Group("Loop A", ()), at(0))
    await store.contacts.save_group(
        Group("Loop B", (Member.group("Loop A"), Member.contact(bob.id))), at(0))
    await store.contacts.save_group(Group("Loop A", (Member.group("Loop B"),)), at(0))  # a cycle
    await store.contacts.save_alias(Alias("boss", ("jane@corp.test",)), at(0))

    book = await store.contacts.address_book_for({"loop a", "boss", "ann lee", "unknown"})
    assert set(book.groups) == {"loop a", "loop b"}
    assert set(book.aliases) == {"boss"}
    assert [c.id for c in book.contacts_by_name["ann lee"]] == [ann.id]
    assert set(book.contacts_by_id) == {bob.id}
    assert (await store.contacts.address_book_for(set())).groups == {}


async def test_suggest_matches_name_words_and_addresses_by_prefix(store: Store) -> None:
    await store.contacts.apply_contact_changes(ContactChanges(add=(
        ANN, BOB, NewContact("Annika Berg", ("annika@corp.test",)))), at(0))

    by_first = await store.contacts.suggest("ann")
    assert [s.address for s in by_first] == ["ann@corp.test", "Ann.Lee@Home.test",
                                             "annika@corp.test"]
    assert [s.address for s in await store.contacts.suggest("LEE")] == ["ann@corp.test",
                                                                        "Ann.Lee@Home.test"]
    assert [s.address for s in await store.contacts.suggest("ann.lee@")] == ["Ann.Lee@Home.test"]
    assert [s.formatted() for s in await store.contacts.suggest("bob s")] == [
        "Bob Stone <bob@corp.test>"]
    assert await store.contacts.suggest("  ") == []
    assert await store.contacts.suggest("zed") == []
    assert len(await store.contacts.suggest("a", limit=1)) == 1
    with pytest.raises(InputError):
        await store.contacts.suggest("a", limit=0)


async def test_suggest_ranks_by_how_often_and_how_recently_used(store: Store) -> None:
    await store.contacts.apply_contact_changes(ContactChanges(add=(
        NewContact("Sam Often", ("often@corp.test",)),
        NewContact("Sam Lately", ("lately@corp.test",)),
        NewContact("Sam Never", ("never@corp.test",)),
        NewContact("Sam Once", ("once@corp.test",)))), at(0))
    long_ago = T0 - 6 * HALF_LIFE
    await store.contacts.record_usage({"often@corp.test": 3}, long_ago)  # 3 uses, 6 half-lives ago
    await store.contacts.record_usage({"lately@corp.test": 1}, T0)
    await store.contacts.record_usage({"once@corp.test": 1}, T0 - timedelta(days=1))
    await store.contacts.record_usage({"often@corp.test": 1}, long_ago + timedelta(hours=1))

    ranked = await store.contacts.suggest("sam")
    assert [s.address for s in ranked] == ["lately@corp.test", "once@corp.test",
                                           "often@corp.test", "never@corp.test"]
    often = ranked[2]
    assert (often.use_count, often.last_used_at) == (4, long_ago + timedelta(hours=1))
    assert (ranked[3].use_count, ranked[3].last_used_at) == (0, None)

    await store.contacts.record_usage({"often@corp.test": 100}, T0)
    assert (await store.contacts.suggest("sam"))[0].address == "often@corp.test"


async def test_a_retry_reroutes_recipients_in_its_own_transaction(store: Store) -> None:
    message = new_message(to=("a@corp.test", "b@other.test"), relay="external",
                          hold=Hold("internal_domains[0] ('corp.test')"))
    await store.messages.enqueue(message)
    retried = await store.messages.retry(message.id, T0, reroute={"a@corp.test": "internal"})
    assert retried.status is MessageStatus.QUEUED
    stored = (await store.messages.get(message.id)).message
    relays = [(r.address, r.relay) for r in stored.recipients]
    assert relays == [("a@corp.test", "internal"), ("b@other.test", "external")]


async def test_a_retry_refused_reroutes_nothing(store: Store) -> None:
    """Queued mail cannot be retried: the refusal leaves its recipients' relays as they
    were (the reroute and the retry were two commits, and the first stayed)."""
    message = new_message(to=("a@corp.test",), relay="external")
    await store.messages.enqueue(message)
    with pytest.raises(Conflict):
        await store.messages.retry(message.id, T0, reroute={"a@corp.test": "internal"})
    (recipient,) = (await store.messages.get(message.id)).message.recipients
    assert recipient.relay == "external"


async def test_suggest_looks_past_an_address_that_matches_by_many_terms(store: Store) -> None:
    await store.contacts.apply_contact_changes(ContactChanges(add=(
        NewContact("Aa Ab Ac Ad Ae Af Ag Ah", ("aa@x.test",)),
        NewContact("Az Other", ("other@x.test",)))), at(0))
    await store.contacts.record_usage({"aa@x.test": 5}, at(0))
    found = await store.contacts.suggest("a", limit=2)
    assert [s.address for s in found] == ["aa@x.test", "other@x.test"]


async def test_a_message_held_at_submit_keeps_its_reason_and_guidance(store: Store) -> None:
    held = replace(new_message(to=("a@corp.test",), relay="external"),
                   hold=Hold("internal_domains[0] ('corp.test')", "internal_route_violation"))
    await store.messages.enqueue(held)
    detail = await store.messages.get(held.id)
    assert detail.message.hold_reason == "internal_domains[0] ('corp.test')"
    (event,) = detail.events
    assert (event.type.value, event.guidance, event.detail) == (
        "held", "internal_route_violation", "internal_domains[0] ('corp.test')")


async def test_usage_of_a_long_list_is_written_a_chunk_per_transaction(store: Store) -> None:
    """UsageRecorder.flush: 450 addresses are three transactions of at most USAGE_CHUNK,
    so one big message's usage never holds the (SQLite) writer for long; all counted."""
    written: list[int] = []
    facet = store.contacts

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(facet, name)

        async def record_usage(self, counts: Mapping[str, int], now: datetime) -> None:
            written.append(len(counts))
            await facet.record_usage(counts, now)

    recorder = UsageRecorder(Counting(), delay=3600)  # type: ignore[arg-type]
    recorder.note([f"u{i}@corp.test" for i in range(450)] + ["u0@corp.test"], T0)
    await recorder.aclose()

    assert written == [USAGE_CHUNK, USAGE_CHUNK, 450 - 2 * USAGE_CHUNK]
    await store.contacts.apply_contact_changes(ContactChanges(add=(
        NewContact("Zed", ("u0@corp.test",)), NewContact("Zoe", ("u449@corp.test",)))), at(0))
    counts = {s.address: s.use_count for s in await store.contacts.suggest("z")}
    assert counts == {"u0@corp.test": 2, "u449@corp.test": 1}


async def test_usage_noted_while_a_batch_is_written_is_written_without_another_submit(
        store: Store) -> None:
    """A submit counted while the recorder writes the batch before it is flushed in turn,
    with no later submit to start a flush. (It waited for the next submit: on a loaded
    machine an end-to-end test saw one of two uses never counted.)"""
    facet = store.contacts
    writing, go_on = asyncio.Event(), asyncio.Event()

    class Slow:
        def __getattr__(self, name: str) -> Any:
            return getattr(facet, name)

        async def record_usage(self, counts: Mapping[str, int], now: datetime) -> None:
            writing.set()
            await go_on.wait()
            await facet.record_usage(counts, now)

    await store.contacts.apply_contact_changes(ContactChanges(add=(
        NewContact("Zed", ("zed@corp.test",)),)), at(0))
    recorder = UsageRecorder(Slow(), delay=0.01)  # type: ignore[arg-type]
    recorder.note(["zed@corp.test"], T0)
    await writing.wait()
    recorder.note(["zed@corp.test"], T0)  # while the first use is being written
    go_on.set()

    async def counted_twice() -> bool:
        (zed,) = await store.contacts.suggest("zed")
        return zed.use_count == 2

    await wait_until_async(counted_twice, "the second use, with no further submit")
    await recorder.aclose()


async def test_usage_of_many_addresses_at_once_reaches_contacts_old_and_new(
        store: Store) -> None:
    """One call with 300 addresses (a big message's), of which one is a contact's and
    one becomes a contact's later: both rank by it; the others are counted too."""
    await store.contacts.apply_contact_changes(ContactChanges(add=(
        NewContact("Sam Zoe", ("Known@Corp.test",)),  # after "Sam Rare" by name
        NewContact("Sam Rare", ("rare@corp.test",)))), at(0))
    many = {f"r{n}@corp.test": 1 for n in range(298)}
    await store.contacts.record_usage({**many, "known@corp.test": 2, "later@corp.test": 5},
                                      at(1))
    await store.contacts.record_usage({**many, "known@corp.test": 1}, at(2))
    await store.contacts.apply_contact_changes(ContactChanges(add=(
        NewContact("Sam Later", ("later@corp.test",)),)), at(3))

    ranked = await store.contacts.suggest("sam")
    assert [(s.address, s.use_count) for s in ranked] == [
        ("later@corp.test", 5), ("Known@Corp.test", 3), ("rare@corp.test", 0)]
    assert ranked[1].last_used_at == at(2)


async def test_usage_added_to_a_row_another_writer_wrote_keeps_both_counts(
        store: Store) -> None:
    """A row another writer wrote (here straight into the table) is added to, never
    overwritten nor refused as a duplicate key; the rank is add_use's on both backends
    (PostgreSQL computes it in SQL), and the contact's search terms get it."""
    await store.contacts.apply_contact_changes(ContactChanges(add=(
        NewContact("Sam Raced", ("raced@corp.test",)),)), at(0))
    first = add_use(None, use_weight(at(1)), 2)
    await store._run.write(_write_row, "raced@corp.test", 2, at(1), first)  # type: ignore[attr-defined]
    await store.contacts.record_usage({"raced@corp.test": 3}, at(5))

    (raced,) = await store.contacts.suggest("sam")
    assert (raced.use_count, raced.last_used_at) == (5, at(5))
    expected = add_use(first, use_weight(at(5)), 3)
    assert await store._run.read(_ranks, "raced@corp.test") == (  # type: ignore[attr-defined]
        pytest.approx(expected, rel=1e-12), pytest.approx(expected, rel=1e-12))


async def test_usage_far_apart_in_time_ranks_by_the_newer_without_failing(
        store: Store) -> None:
    """Uses 2,000 half-lives apart: the older one's share, 2**-2000, is below a float's
    precision (PostgreSQL's power() would fail with an underflow)."""
    old = T0 - 2000 * HALF_LIFE
    await store.contacts.record_usage({"far@corp.test": 1}, old)
    await store.contacts.record_usage({"far@corp.test": 1}, T0)
    address_rank, _ = await store._run.read(_ranks, "far@corp.test")  # type: ignore[attr-defined]
    assert address_rank == pytest.approx(add_use(add_use(None, use_weight(old)),
                                                 use_weight(T0)), rel=1e-12)
    assert address_rank == pytest.approx(use_weight(T0), rel=1e-12)


def _write_row(conn: Any, key: str, count: int, when: datetime, rank: float) -> None:
    conn.execute(insert(address_usage).values(address_key=key, use_count=count,
                                              last_used_at=when, rank=rank))


def _ranks(conn: Any, key: str) -> tuple[float, float | None]:
    """The address's usage rank, and the rank of its contact's search terms (if any)."""
    usage = conn.execute(select(address_usage.c.rank)
                         .where(address_usage.c.address_key == key)).scalar_one()
    terms = conn.execute(select(contact_terms.c.rank)
                         .where(contact_terms.c.address_key == key)).scalars().all()
    assert len(set(terms)) <= 1
    return usage, terms[0] if terms else None
