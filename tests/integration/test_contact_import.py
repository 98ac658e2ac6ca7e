"""Importing CSV (Outlook, Google) and vCard files into a real store: each import
gives a merge and dedup report; `dedupe` finds and merges duplicates."""

from __future__ import annotations

import pytest

from outbox.core.contacts import Group, Member, Source
from outbox.errors import InputError
from outbox.service.contacts import ContactBook
from outbox.store.base import ContactStore

OUTLOOK_CSV = """\
First Name,Last Name,E-mail Address,E-mail 2 Address,Categories
Ann,Lee,ann@corp.test,ann.lee@home.test,staff;ops
"Doe, John",,j@x.test,,
Ann,Lee,ANN@corp.test,,vip
Bad,Guy,not-an-address,,
Carol,King,carol@x.test,,club
"""

GOOGLE_CSV = """\
Name,Given Name,E-mail 1 - Type,E-mail 1 - Value,Group Membership
Bob Stone,Bob,* Work,bob@corp.test ::: bob@home.test,* myContacts ::: Friends
"""

VCARDS = """\
BEGIN:VCARD
VERSION:3.0
FN:Ann Lee
N:Lee;Ann;;;
EMAIL;TYPE=INTERNET:ann@corp.test
EMAIL;TYPE=HOME:ann2@home.test
CATEGORIES:board,vip
END:VCARD
BEGIN:VCARD
VERSION:4.0
N:Park;Dee;;;
EMAIL:dee@x.test
END:VCARD
BEGIN:VCARD
VERSION:3.0
FN:Broken
EMAIL;TYPE=INTERNET
END:VCARD
BEGIN:VCARD
VERSION:3.0
FN:No Address
END:VCARD
"""


async def people(store: ContactStore) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    return {c.name: (c.emails, c.tags) for c in await store.list_contacts()}


async def test_a_csv_import_merges_duplicates_and_reports_each_decision(
        book: ContactBook) -> None:
    await book.add_contact("Carol K.", ["carol@x.test"], ["friend"])
    report = await book.import_file(OUTLOOK_CSV.encode(), "outlook.csv")

    assert (report.read, report.added, report.updated, report.merged, report.skipped) == (
        5, 2, 1, 1, 1)
    assert report.notes == (
        "line 4: same person as line 2 (a shared address); merged",
        "line 5: skipped address 'not-an-address': 'not-an-address' is not an email "
        "address (it has no @)",
        "line 5: skipped 'Bad Guy': no valid address",
        "line 6: merged into contact 1 (Carol K.)",
    )
    assert await people(book.store) == {
        "Carol K.": (("carol@x.test",), ("friend", "club")),
        "Ann Lee": (("ann@corp.test", "ann.lee@home.test"), ("staff", "ops", "vip")),
        "Doe, John": (("j@x.test",), ()),
    }
    again = await book.import_file(OUTLOOK_CSV.encode(), "outlook.csv")
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)


async def test_a_google_csv_splits_multi_value_cells(book: ContactBook) -> None:
    report = await book.import_file(GOOGLE_CSV.encode(), "google.csv")
    assert report.added == 1
    (bob,) = await book.store.list_contacts()
    assert (bob.name, bob.emails, bob.tags, bob.source) == (
        "Bob Stone", ("bob@corp.test", "bob@home.test"), ("myContacts", "Friends"), Source.CSV)


async def test_a_vcard_import_reports_broken_cards_and_merges_known_people(
        book: ContactBook) -> None:
    await book.add_contact("Ann Lee", ["ann@corp.test"])
    report = await book.import_file(VCARDS.encode(), "people.vcf")

    assert (report.read, report.added, report.updated, report.skipped) == (4, 1, 1, 2)
    assert report.notes[0].startswith("record 3: skipped, not a readable vCard")
    assert "record 1: merged into contact 1 (Ann Lee)" in report.notes
    assert "record 4: skipped 'No Address': no valid address" in report.notes
    assert await people(book.store) == {
        "Ann Lee": (("ann@corp.test", "ann2@home.test"), ("board", "vip")),
        "Dee Park": (("dee@x.test",), ()),
    }


async def test_a_dry_run_reports_without_changing_anything(book: ContactBook) -> None:
    report = await book.import_file(VCARDS.encode(), "people.vcf", apply=False)
    assert report.added == 2
    assert await book.store.list_contacts() == []


async def test_unreadable_files_are_refused_with_a_reason(book: ContactBook) -> None:
    with pytest.raises(InputError, match="no email column"):
        await book.import_file(b"Name,Phone\nAnn,123\n", "x.csv")
    with pytest.raises(InputError, match="no vCard found"):
        await book.import_file(b"hello", "x.vcf")
    latin = "Name,Email\nJosé Núñez,jose@x.test\n".encode("cp1252")
    await book.import_file(latin, "windows.csv")
    assert [c.name for c in await book.store.list_contacts()] == ["José Núñez"]


async def test_dedupe_reports_then_merges_keeping_group_memberships(book: ContactBook) -> None:
    first = await book.add_contact("Ann Lee", ["ann@corp.test"])
    second = await book.add_contact("A. Lee", ["ANN@corp.test", "a.lee@home.test"], ["vip"])
    await book.add_contact("Sam Twin", ["s1@x.test"])
    await book.add_contact("Sam Twin", ["s2@x.test"])
    await book.save_group(Group("Board", (Member.contact(second.id),)))

    report = await book.dedupe(apply=False)
    assert report.merged == 1
    assert report.notes[0] == (f"merge {second.id} into {first.id} (Ann Lee): ann@corp.test, "
                               "a.lee@home.test")
    assert "possible duplicates" in report.notes[1]
    assert len(await book.store.list_contacts()) == 4

    await book.dedupe(apply=True)
    merged = await book.get_contact(first.id)
    assert (merged.emails, merged.tags) == (("ann@corp.test", "a.lee@home.test"), ("vip",))
    assert (await book.store.get_group("Board")).members == (Member.contact(first.id),)
    assert (await book.dedupe(apply=False)).merged == 0


OUTLOOK_SEMICOLON_CSV = """\
First Name;Last Name;E-mail Address;Categories
Åsa;Berg;asa@corp.test;staff
"Dupont, Jean";;jean@x.test;
"""


async def test_a_semicolon_outlook_csv_keeps_every_name(book: ContactBook) -> None:
    """European Outlook exports separate fields with `;`: the names must survive."""
    report = await book.import_file(OUTLOOK_SEMICOLON_CSV.encode(), "contacts.csv")
    assert report.added == 2
    found = {c.emails[0]: (c.name, c.tags) for c in await book.store.list_contacts()}
    assert found == {"asa@corp.test": ("Åsa Berg", ("staff",)),
                     "jean@x.test": ("Dupont, Jean", ())}
