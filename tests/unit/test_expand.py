"""Expanding aliases, groups and contact names in recipient fields (core.expand)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.addresses import plan_recipients
from outbox.core.contacts import (
    AddressBook,
    Alias,
    Contact,
    Group,
    Member,
    MemberKind,
    name_key,
)
from outbox.core.expand import expand_recipients, is_name, referenced_names
from outbox.errors import InvalidAddress

ANN = Contact(1, "Ann Lee", ("ann@corp.test", "ann@home.test"))
BOB = Contact(2, "Bob Stone", ("bob@corp.test",))
DOE = Contact(3, "Doe, John", ("j@x.test",))
TWIN_A = Contact(4, "Sam Twin", ("sam1@x.test",))
TWIN_B = Contact(5, "Sam Twin", ("sam2@x.test",))
ODD = Contact(6, "Ann\x07Odd", ("odd@x.test",))


def book(*groups: Group, aliases: tuple[Alias, ...] = (),
         contacts: tuple[Contact, ...] = (ANN, BOB, DOE, TWIN_A, TWIN_B, ODD)) -> AddressBook:
    by_name: dict[str, tuple[Contact, ...]] = {}
    for c in contacts:
        by_name[name_key(c.name)] = (*by_name.get(name_key(c.name), ()), c)
    return AddressBook(aliases={name_key(a.name): a for a in aliases},
                       groups={name_key(g.name): g for g in groups},
                       contacts_by_name=by_name, contacts_by_id={c.id: c for c in contacts})


OPS = Group("Ops", (Member.contact(2), Member.address("pager@corp.test")))
ALL = Group("All Staff", (Member.contact(1), Member.group("Ops"), Member.address("x@corp.test")))
BOSS = Alias("boss", ("Jane Roe <jane@x.test>",))
SUPPORT = Alias("support", ("s1@x.test", "s2@x.test"))
BOOK = book(OPS, ALL, aliases=(BOSS, SUPPORT))


def planned(expansion: Any) -> list[tuple[str, str, str]]:
    plan = plan_recipients(expansion.to, expansion.cc, expansion.bcc)
    return [(r.kind.value, r.address.formatted(), expansion.provenance_of(r.address.addr_spec))
            for r in plan.envelope]


def test_typed_addresses_pass_through_untouched() -> None:
    to = 'A <a@x.test>; "Doe, John" <j@x.test>, c@x.test'
    expansion = expand_recipients(to, ["d@x.test"], (), BOOK)
    assert (expansion.to, expansion.cc, expansion.bcc) == (to, ["d@x.test"], ())
    assert expansion.provenance == {}


def test_an_alias_becomes_its_addresses() -> None:
    expansion = expand_recipients("boss, a@x.test", (), "support", BOOK)
    assert expansion.to == ["Jane Roe <jane@x.test>", "a@x.test"]
    assert planned(expansion) == [("to", "Jane Roe <jane@x.test>", "alias:boss"),
                                  ("to", "a@x.test", ""),
                                  ("bcc", "s1@x.test", "alias:support"),
                                  ("bcc", "s2@x.test", "alias:support")]


def test_nested_groups_expand_depth_first_with_the_chain_as_provenance() -> None:
    expansion = expand_recipients(["all staff"], (), (), BOOK)
    assert planned(expansion) == [
        ("to", "Ann Lee <ann@corp.test>", "group:All Staff > contact:Ann Lee"),
        ("to", "Bob Stone <bob@corp.test>", "group:All Staff > group:Ops > contact:Bob Stone"),
        ("to", "pager@corp.test", "group:All Staff > group:Ops"),
        ("to", "x@corp.test", "group:All Staff")]


def test_a_contact_name_sends_to_its_first_address_whatever_the_case() -> None:
    expansion = expand_recipients("  ANN   lee ", '"Doe, John"', (), BOOK)
    assert planned(expansion) == [("to", "Ann Lee <ann@corp.test>", "contact:Ann Lee"),
                                  ("cc", '"Doe, John" <j@x.test>', "contact:Doe, John")]


def test_a_name_that_cannot_be_a_display_name_sends_the_bare_address() -> None:
    expansion = expand_recipients('"Ann\x07Odd"', (), (), BOOK)
    assert planned(expansion) == [("to", "odd@x.test", "contact:Ann\x07Odd")]


def test_a_cycle_is_skipped_and_reported() -> None:
    loop_a = Group("A", (Member.address("a@x.test"), Member.group("B")))
    loop_b = Group("B", (Member.group("A"), Member.address("b@x.test")))
    expansion = expand_recipients("a", (), (), book(loop_a, loop_b))
    assert [a for _, a, _ in planned(expansion)] == ["a@x.test", "b@x.test"]
    assert expansion.cycles == ("A",)


def test_a_group_that_lists_itself_is_expanded_once() -> None:
    selfish = Group("Me", (Member.group("me"), Member.address("m@x.test")))
    expansion = expand_recipients("me", (), (), book(selfish))
    assert [a for _, a, _ in planned(expansion)] == ["m@x.test"]


def test_missing_members_are_left_out() -> None:
    broken = Group("Broken", (Member.contact(99), Member.group("gone"),
                              Member.address("ok@x.test")))
    expansion = expand_recipients("broken", (), (), book(broken))
    assert [a for _, a, _ in planned(expansion)] == ["ok@x.test"]


def test_the_first_occurrence_decides_provenance_as_it_decides_the_field() -> None:
    expansion = expand_recipients("bob@corp.test", (), "ops", BOOK)
    assert planned(expansion) == [("to", "bob@corp.test", ""),
                                  ("bcc", "pager@corp.test", "group:Ops")]
    expansion = expand_recipients("ops", "BOB@CORP.TEST", (), BOOK)
    assert planned(expansion)[0] == ("to", "Bob Stone <bob@corp.test>",
                                     "group:Ops > contact:Bob Stone")


def test_an_rfc_group_may_hold_names() -> None:
    expansion = expand_recipients("Team: boss, c@x.test;", (), (), BOOK)
    assert [a for _, a, _ in planned(expansion)] == ["Jane Roe <jane@x.test>", "c@x.test"]


@pytest.mark.parametrize(("value", "field"), [
    ("a@x.test, nobody, b@x.test", "to[1]"),
    (["a@x.test", "b@x.test; nobody"], "to[1]"),
])
def test_an_unknown_name_is_refused_naming_the_entry(value: Any, field: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        expand_recipients(value, (), (), BOOK)
    assert caught.value.field == field
    assert "'nobody' is not an email address" in caught.value.message
    assert "no alias, group or contact" in caught.value.message


@pytest.mark.parametrize(("name", "words"), [
    ("sam twin", "2 contact(s) (sam1@x.test, sam2@x.test)"),
    ("ops", "an alias and a group"),
])
def test_an_ambiguous_name_is_refused_never_guessed(name: str, words: str) -> None:
    clashing = book(OPS, aliases=(Alias("Ops", ("o@x.test",)),))
    with pytest.raises(InvalidAddress) as caught:
        expand_recipients(["a@x.test", name], (), (), clashing)
    assert caught.value.field == "to[1]"
    assert "ambiguous" in caught.value.message and words in caught.value.message


def test_a_line_break_cannot_ride_in_on_a_name() -> None:
    value = "boss\r\nBcc: victim@evil.test"
    expansion = expand_recipients(value, (), (), BOOK)
    assert expansion.to == value  # left for the parser, which refuses it
    with pytest.raises(InvalidAddress, match="line break"):
        plan_recipients(expansion.to, expansion.cc, expansion.bcc)


def test_non_strings_are_left_for_the_parser() -> None:
    expansion = expand_recipients(["boss", 42], (), (), BOOK)  # type: ignore[list-item]
    assert expansion.to == ["Jane Roe <jane@x.test>", 42]


def test_referenced_names_are_the_entries_without_at_or_brackets() -> None:
    assert referenced_names('boss, "Doe, John", a@x.test, <b@x.test>', ["Ops"], None) == {
        "boss", "doe, john", "ops"}
    assert is_name("Ann Lee") and not is_name("Ann <a@x.test>") and not is_name("a@x")


# --- properties -----------------------------------------------------------------------------

local = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
address = st.builds(lambda part, d: f"{part}@{d}.test", local, st.sampled_from(["x", "y", "corp"]))


@given(st.lists(address, max_size=6), st.lists(address, max_size=3))
def test_without_names_nothing_changes(to: list[str], bcc: list[str]) -> None:
    expansion = expand_recipients(to, (), ", ".join(bcc), BOOK)
    assert (expansion.to, expansion.cc, expansion.bcc) == (to, (), ", ".join(bcc))


group_names = st.sampled_from(["g0", "g1", "g2", "g3"])
member = st.one_of(group_names.map(Member.group), address.map(Member.address))


def reachable_addresses(graph: dict[str, list[Member]], start: str) -> set[str]:
    found: set[str] = set()
    todo, seen = [start], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in graph:
            continue
        seen.add(name)
        for m in graph[name]:
            if m.kind is MemberKind.GROUP:
                todo.append(m.value)
            else:
                found.add(m.value)
    return found


@given(st.dictionaries(group_names, st.lists(member, max_size=4), min_size=1), group_names)
def test_any_group_graph_expands_to_its_reachable_addresses_only(
        graph: dict[str, list[Member]], start: str) -> None:
    groups = book(*(Group(name, tuple(members)) for name, members in graph.items()))
    if start not in graph:
        with pytest.raises(InvalidAddress):
            expand_recipients(start, (), (), groups)
        return
    expansion = expand_recipients(start, (), (), groups)
    expected = reachable_addresses(graph, start)
    got = set() if not expected else {
        r.address.addr_spec for r in plan_recipients(expansion.to).envelope}
    assert got == expected
    assert all(p.startswith(f"group:{start}") for p in expansion.provenance.values())
