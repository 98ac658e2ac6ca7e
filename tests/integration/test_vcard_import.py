"""vCard files as phones and Outlook write them (found by a stranger pass): vCard 2.1
quoted-printable values broken over several lines (soft line breaks) are read, and a
last card the file ends inside is named in the report, not dropped without a word."""

from __future__ import annotations

from outbox.addressbook.vcard_lines import normalise_quoted_printable, split_cards
from outbox.service.contacts import ContactBook

# As a Nokia / Outlook 2.1 export: CRLF, soft line breaks ("=" at a line's end), one value
# in UTF-8, one in ISO-8859-1, one quoted-printable without a CHARSET.
PHONE_CARDS = (
    "BEGIN:VCARD\r\n"
    "VERSION:2.1\r\n"
    "N;ENCODING=QUOTED-PRINTABLE;CHARSET=UTF-8:M=C3=BCller;J=\r\n"
    "=C3=BCrgen\r\n"
    "FN;ENCODING=QUOTED-PRINTABLE;CHARSET=UTF-8:J=C3=BCrgen M=C3=BC=\r\n"
    "ller\r\n"
    "NOTE;ENCODING=QUOTED-PRINTABLE:first line=0D=0A=\r\n"
    "second line=3D=\r\n"
    "\r\n"
    "EMAIL;PREF;INTERNET:juergen@example.test\r\n"
    "END:VCARD\r\n"
    "BEGIN:VCARD\r\n"
    "VERSION:2.1\r\n"
    "FN;CHARSET=ISO-8859-1;QUOTED-PRINTABLE:Ren=E9e Fran=E7ois Lef=E8vre-Beaumont=\r\n"
    " de la Tour\r\n"
    "EMAIL;INTERNET:renee@example.test\r\n"
    "END:VCARD\r\n"
    "BEGIN:VCARD\r\n"
    "VERSION:2.1\r\n"
    "FN;ENCODING=QUOTED-PRINTABLE:Zo=C3=AB=\r\n"
    " Quinn\r\n"
    "EMAIL;INTERNET:zoe@example.test\r\n"
    "END:VCARD\r\n"
)

CUT_SHORT = (
    "BEGIN:VCARD\nVERSION:3.0\nFN:Ann Lee\nEMAIL:ann@example.test\nEND:VCARD\n"
    "BEGIN:VCARD\nVERSION:3.0\nFN:Bob Stone\nEMAIL:bob@exam"
)


async def test_quoted_printable_soft_line_breaks_are_decoded(book: ContactBook) -> None:
    report = await book.import_file(PHONE_CARDS.encode("ascii"), "phone.vcf")

    assert (report.read, report.added, report.skipped) == (3, 3, 0), report.lines()
    assert {c.name: c.emails for c in await book.store.list_contacts()} == {
        "Jürgen Müller": ("juergen@example.test",),
        "Renée François Lefèvre-Beaumont de la Tour": ("renee@example.test",),
        "Zoë Quinn": ("zoe@example.test",),
    }


def test_a_soft_line_break_joins_the_value_and_keeps_what_follows() -> None:
    (card, *_), _ = split_cards(PHONE_CARDS)
    lines = normalise_quoted_printable(card).split("\r\n")

    assert "N;ENCODING=QUOTED-PRINTABLE;CHARSET=UTF-8:M=C3=BCller;J=C3=BCrgen" in lines
    note = next(line for line in lines if line.startswith("NOTE"))
    assert note.endswith(":first=20line=0D=0Asecond=20line=3D")  # the "=" before a blank line
    assert "EMAIL;PREF;INTERNET:juergen@example.test" in lines


async def test_a_card_the_file_ends_inside_is_reported(book: ContactBook) -> None:
    report = await book.import_file(CUT_SHORT.encode(), "cut.vcf")

    assert (report.read, report.added, report.skipped) == (2, 1, 1), report.lines()
    assert report.notes == ("record 2: skipped, the file ends before its END:VCARD (cut "
                            "short? export the file again)",)
    assert [c.name for c in await book.store.list_contacts()] == ["Ann Lee"]


async def test_a_file_of_one_card_cut_short_is_a_report_not_no_vcard(
        book: ContactBook) -> None:
    report = await book.import_file(b"BEGIN:VCARD\nVERSION:3.0\nFN:Ann\n", "cut.vcf")

    assert (report.read, report.added, report.skipped) == (1, 0, 1)
    assert report.notes[0].startswith("record 1: skipped, the file ends before its END:VCARD")
