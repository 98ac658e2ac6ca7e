"""Import merge, dedupe and directory-sync plans (core.contact_merge), and the
address book's rules for names, keys, search terms, suggestions, group cycles and ranking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.addresses import parse_mailbox
from outbox.core.contact_merge import plan_dedupe, plan_directory_sync, plan_import
from outbox.core.contacts import (
    EPOCH,
    HALF_LIFE,
    Contact,
    Group,
    Member,
    NewContact,
    Source,
    Suggestion,
    SyncState,
    add_use,
    address_key,
    check_name,
    group_cycle,
    name_key,
    prefix_range,
    search_terms,
    use_weight,
)
from outbox.errors import InputError

NOW = datetime(2030, 1, 1, tzinfo=UTC)
STATE = SyncState("ldap", "20300101000000Z", NOW)


def rec(name: str, *emails: str, tags: tuple[str, ...] = ()) -> NewContact:
    return NewContact(name, emails, tags, Source.CSV)


# --- import ---------------------------------------------------------------------------------


def test_import_adds_new_people_and_merges_the_file_s_own_duplicates() -> None:
    records = [(2, rec("Ann Lee", "ann@x.test", tags=("ops",))),
               (3, rec("Bob", "bob@x.test")),
               (4, rec("Ann L.", "ANN@x.test", "ann@home.test", tags=("vip",)))]
    changes, report = plan_import(records, [])
    assert changes.add == (rec("Ann Lee", "ann@x.test", "ann@home.test", tags=("ops", "vip")),
                           rec("Bob", "bob@x.test"))
    assert (report.read, report.added, report.merged) == (3, 2, 1)
    assert report.notes == ("record 4: same person as record 2 (a shared address); merged",)


def test_a_record_linking_two_earlier_ones_joins_all_three() -> None:
    records = [(1, rec("A", "a@x.test")), (2, rec("B", "b@x.test")),
               (3, rec("AB", "a@x.test", "b@x.test"))]
    changes, _ = plan_import(records, [])
    assert [c.emails for c in changes.add] == [("a@x.test", "b@x.test")]


def test_import_merges_into_an_existing_contact_and_keeps_its_name() -> None:
    existing = [Contact(7, "Ann Lee", ("ann@x.test",), ("staff",))]
    changes, report = plan_import([(2, rec("Annie", "Ann@X.test", "a2@x.test", tags=("vip",)))],
                                  existing)
    assert changes.update == ((7, NewContact("Ann Lee", ("ann@x.test", "a2@x.test"),
                                             ("staff", "vip"))),)
    assert (report.added, report.updated) == (0, 1)
    assert report.notes == ("record 2: merged into contact 7 (Ann Lee)",)


def test_importing_what_is_already_there_changes_nothing() -> None:
    existing = [Contact(7, "Ann Lee", ("ann@x.test",), ("staff",))]
    changes, report = plan_import([(2, rec("Ann", "ann@x.test", tags=("staff",)))], existing)
    assert changes.is_empty and report.unchanged == 1


def test_bad_addresses_are_skipped_and_reported_by_record() -> None:
    records = [(2, rec("Ann", "ann@x.test", "not-an-address")), (3, rec("Bad", "@x.test"))]
    changes, report = plan_import(records, [])
    assert changes.add == (rec("Ann", "ann@x.test"),)
    assert report.skipped == 1
    assert report.notes[0].startswith("record 2: skipped address 'not-an-address'")
    assert report.notes[-1] == "record 3: skipped 'Bad': no valid address"
    assert report.summary() == ("2 read, 1 added, 0 updated, 0 unchanged, 0 merged, 0 removed, "
                                "1 skipped")


def test_a_record_matching_two_contacts_goes_to_the_oldest_and_says_so() -> None:
    existing = [Contact(9, "A2", ("a2@x.test",)), Contact(4, "A1", ("a1@x.test",))]
    changes, report = plan_import([(5, rec("A", "a1@x.test", "a2@x.test"))], existing)
    assert [id for id, _ in changes.update] == [4]
    assert "matches contacts 4, 9" in report.notes[0] and "dedupe" in report.notes[0]


# --- dedupe ---------------------------------------------------------------------------------


def test_contacts_sharing_an_address_merge_into_the_oldest_transitively() -> None:
    contacts = [Contact(1, "Ann", ("a@x.test",)), Contact(2, "Ann L", ("A@X.test", "b@x.test")),
                Contact(3, "Ann Lee", ("b@x.test", "c@x.test"), ("vip",)),
                Contact(4, "Other", ("o@x.test",))]
    changes, report = plan_dedupe(contacts)
    assert changes.merges == ((1, (2, 3)),)
    assert changes.update == ((1, NewContact("Ann", ("a@x.test", "b@x.test", "c@x.test"),
                                             ("vip",))),)
    assert report.merged == 2


def test_the_directory_s_contact_survives_and_two_directory_contacts_stay() -> None:
    contacts = [Contact(1, "Ann", ("a@x.test",)),
                Contact(2, "Ann Lee", ("a@x.test",), source=Source.LDAP, external_id="u1"),
                Contact(5, "Ann Dup", ("a@x.test",), source=Source.LDAP, external_id="u2")]
    changes, report = plan_dedupe(contacts)
    assert changes.merges == ((2, (1,)),)
    assert any("all come from the directory" in n for n in report.notes)


def test_same_name_without_a_shared_address_is_only_reported() -> None:
    contacts = [Contact(1, "Sam Twin", ("s1@x.test",)), Contact(2, "sam  twin", ("s2@x.test",))]
    changes, report = plan_dedupe(contacts)
    assert changes.is_empty
    assert report.notes == ("possible duplicates (same name, no shared address, not merged): "
                            "1 <s1@x.test>, 2 <s2@x.test>",)


# --- directory sync -------------------------------------------------------------------------


def entry(uid: str, name: str, *emails: str) -> NewContact:
    return NewContact(name, emails, (), Source.LDAP, uid)


def test_a_full_sync_adds_updates_keeps_and_removes_by_directory_id() -> None:
    existing = [Contact(1, "Ann", ("ann@x.test",), source=Source.LDAP, external_id="u1"),
                Contact(2, "Bob", ("bob@x.test",), source=Source.LDAP, external_id="u2"),
                Contact(3, "Gone", ("gone@x.test",), source=Source.LDAP, external_id="u3")]
    entries = [entry("u1", "Ann", "ann@x.test"), entry("u2", "Robert", "bob@x.test"),
               entry("u4", "Dee", "dee@x.test"), entry("u5", "Bad", "bad@@x.test")]
    changes, report = plan_directory_sync(entries, existing, None, STATE)
    assert changes.add == (entry("u4", "Dee", "dee@x.test"),)
    assert changes.update == ((2, entry("u2", "Robert", "bob@x.test")),)
    assert changes.remove == (3,)
    assert changes.sync_state == STATE
    assert (report.unchanged, report.skipped) == (1, 1)


def test_an_incremental_sync_removes_only_what_the_directory_no_longer_lists() -> None:
    existing = [Contact(1, "Ann", ("ann@x.test",), source=Source.LDAP, external_id="u1"),
                Contact(2, "Bob", ("bob@x.test",), source=Source.LDAP, external_id="u2")]
    changes, report = plan_directory_sync([entry("u2", "Bob", "bob@x.test", "b2@x.test")],
                                          existing, {"u2", "u9"}, STATE)
    assert changes.remove == (1,)
    assert [id for id, _ in changes.update] == [2]
    assert (report.updated, report.removed) == (1, 1)


# --- names, keys, terms, cycles, ranking ----------------------------------------------------


def test_keys_fold_case_width_and_whitespace() -> None:
    assert name_key("  Ann\tLEE ") == name_key("ann lee") == "ann lee"
    assert name_key("\uff2a\uff4f\uff48\uff4e") == "john"  # fullwidth letters
    assert address_key(" Ann@X.Test ") == "ann@x.test"


def test_search_terms_are_name_words_and_addresses() -> None:
    terms = search_terms(NewContact("Ann Lee", ("ann@x.test", "A2@x.test")))
    assert terms == [("ann lee", 0), ("lee", 0), ("ann@x.test", 0),
                     ("ann lee", 1), ("lee", 1), ("a2@x.test", 1)]
    assert prefix_range(" An ") == ("an", "an\U0010ffff")
    assert prefix_range("ANN@X") == ("ann@x", "ann@x\U0010ffff")
    assert prefix_range("   ") is None


@pytest.mark.parametrize(("name", "expected"), [
    ("", "js@x.test"),
    ("John Smith", "John Smith <js@x.test>"),
    ("Smith, John (Ops)", '"Smith, John (Ops)" <js@x.test>'),
    ("Lee <Ops>", '"Lee <Ops>" <js@x.test>'),
    ('John "JS" Smith', r'"John \"JS\" Smith" <js@x.test>'),
    ("Ops; Night", '"Ops; Night" <js@x.test>'),
    ("Jürgen", "Jürgen <js@x.test>"),
])
def test_a_suggestion_reads_back_as_its_one_address_and_name(name: str, expected: str) -> None:
    """The UI makes a chip of `formatted()`: unquoted, "Smith, John" was two entries."""
    formatted = Suggestion(1, name, "js@x.test", 0, None).formatted()
    assert formatted == expected
    address = parse_mailbox(formatted, "to")
    assert (address.display_name, address.addr_spec) == (name, "js@x.test")


@pytest.mark.parametrize("name", ["", "a@b", "x<y", "a,b", "a;b", "a:b", 'a"b', "a\x00b",
                                  "x" * 201])
def test_group_and_alias_names_cannot_look_like_addresses(name: str) -> None:
    with pytest.raises(InputError) as caught:
        check_name(name, "name")
    assert caught.value.field == "name"


def test_a_good_name_is_trimmed() -> None:
    assert check_name("  All   Staff ", "name") == "All Staff"


def test_a_group_that_would_contain_itself_is_found_with_its_chain() -> None:
    saved = {"a": Group("A", (Member.group("B"),)), "b": Group("B", (Member.group("C"),)),
             "c": Group("C", (Member.address("c@x.test"),))}
    assert group_cycle(saved, Group("C", (Member.group("a"),))) == ["C", "a", "B", "C"]
    assert group_cycle(saved, Group("D", (Member.group("A"),))) is None
    assert group_cycle(saved, Group("Self", (Member.group("self"),))) == ["Self", "self"]


def test_one_use_is_worth_half_as_much_per_half_life() -> None:
    now = EPOCH + 10 * HALF_LIFE
    assert use_weight(now) == pytest.approx(10.0)
    twice_old = add_use(None, use_weight(now - HALF_LIFE), times=2)
    assert twice_old == pytest.approx(use_weight(now))


times = st.integers(0, 2000).map(lambda d: EPOCH + timedelta(days=d))


@given(st.lists(st.tuples(times, st.integers(1, 5)), min_size=1, max_size=8),
       st.lists(st.tuples(times, st.integers(1, 5)), min_size=1, max_size=8))
def test_rank_order_is_the_order_of_decayed_use_totals(
        a: list[tuple[datetime, int]], b: list[tuple[datetime, int]]) -> None:
    def rank(uses: list[tuple[datetime, int]]) -> float:
        value = None
        for at, count in uses:
            value = add_use(value, use_weight(at), count)
        assert value is not None
        return value

    def total(uses: list[tuple[datetime, int]]) -> float:
        return sum(count * 2 ** (use_weight(at) - 100) for at, count in uses)

    if abs(total(a) - total(b)) > 1e-9 * max(total(a), total(b)):
        assert (rank(a) > rank(b)) == (total(a) > total(b))
