"""Read contacts from CSV and vCard files into `NewContact` records.

CSV: the header decides. A name column (`name`, `full name`, `display name`),
or first and last name columns; every column whose header mentions mail
(`email`, `E-mail Address`, `E-mail 2 Address`, `E-mail 1 - Value`, ...) except
type or label columns; tags from `tags`, `categories`, `groups`, `labels` or
`group membership`. A cell may hold several values separated by `,`, `;` or
Google's ` ::: `. Outlook, Thunderbird and Google exports all read this way.

vCard (2.1, 3.0, 4.0, via vobject): FN (else N), every EMAIL, CATEGORIES as
tags; 2.1 quoted-printable values may span lines (`addressbook.vcard_lines`). Each
card is parsed on its own, so a broken card is reported by number and the others
still import; so is a last card the file ends inside (no END:VCARD).

Records are numbered for the report: a CSV record by the line of the file it starts on
(the header is line 1; a quoted field may span lines), a card by its position.
Validation and merging happen in `core.contact_merge.plan_import`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import vobject

from outbox.addressbook.vcard_lines import normalise_quoted_printable, split_cards
from outbox.core import addresses
from outbox.core.contacts import NewContact, Source
from outbox.errors import InputError

NAME_HEADERS = ("name", "full name", "display name", "fn", "contact name")
FIRST_HEADERS = ("first name", "given name", "firstname", "givenname")
LAST_HEADERS = ("last name", "family name", "surname", "lastname", "familyname")
TAG_HEADERS = ("tags", "tag", "categories", "category", "groups", "group", "labels",
               "group membership")
_SEPARATORS = re.compile(r"\s*(?:,|;|:::)\s*")


@dataclass
class ImportRead:
    """What a file held: numbered records, and the records that could not be read."""

    records: list[tuple[int, NewContact]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unit: str = "record"  # what a number counts in the report: "line" of a CSV file


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM); Windows-1252 as exports from Outlook often are."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def detect_format(filename: str, text: str) -> str:
    """'vcard' or 'csv', by extension, else by content."""
    lowered = filename.lower()
    if lowered.endswith((".vcf", ".vcard")):
        return "vcard"
    if lowered.endswith(".csv"):
        return "csv"
    return "vcard" if text.lstrip().upper().startswith("BEGIN:VCARD") else "csv"


def read_contacts(text: str, format: str) -> ImportRead:
    if format == "vcard":
        return read_vcards(text)
    if format == "csv":
        return read_csv(text)
    raise InputError(f"unknown format {format!r}: use csv or vcard", field="format")


# --- CSV ------------------------------------------------------------------------------------


def read_csv(text: str) -> ImportRead:
    try:
        return _read_csv(text)
    except csv.Error as exc:  # a NUL, a field over csv's size limit, ...
        raise InputError(f"the CSV file cannot be read: {exc}", field="file") from None


def _read_csv(text: str) -> ImportRead:
    reader = csv.reader(io.StringIO(text), delimiter=sniff_delimiter(text))
    header = next(reader, None)
    if header is None:
        raise InputError("the CSV file is empty", field="file")
    columns = _Columns([h.strip().lower() for h in header])
    read = ImportRead(unit="line")
    # line_num counts the lines read so far: a row with a quoted line break ends past its start
    start = reader.line_num + 1
    for row in reader:
        if any(cell.strip() for cell in row):
            read.records.append((start, columns.contact(row)))
        start = reader.line_num + 1
    return read


def sniff_delimiter(text: str) -> str:
    """The header line's separator: `,`, or `;` (Outlook in European locales) or a tab
    when the header has more of those than of commas outside quotes."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    unquoted = "".join(part for index, part in enumerate(header.split('"')) if index % 2 == 0)
    counts = {d: unquoted.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


class _Columns:
    def __init__(self, header: Sequence[str]) -> None:
        self.name = _first(header, NAME_HEADERS)
        self.first = _first(header, FIRST_HEADERS)
        self.last = _first(header, LAST_HEADERS)
        self.emails = [i for i, h in enumerate(header)
                       if "mail" in h and "type" not in h and "label" not in h]
        self.tags = [i for i, h in enumerate(header) if h in TAG_HEADERS]
        if not self.emails:
            raise InputError("the CSV header has no email column (expected a header like "
                             "'email' or 'E-mail Address')", field="file")

    def contact(self, row: Sequence[str]) -> NewContact:
        emails = [e for i in self.emails for e in _split(_cell(row, i))]
        tags = [t.lstrip("* ") for i in self.tags for t in _split(_cell(row, i))]
        return NewContact(self._name(row), tuple(emails), tuple(t for t in tags if t),
                          Source.CSV)

    def _name(self, row: Sequence[str]) -> str:
        if self.name is not None and _cell(row, self.name):
            return _cell(row, self.name)
        parts = [_cell(row, i) for i in (self.first, self.last) if i is not None]
        return " ".join(p for p in parts if p)


def _first(header: Sequence[str], names: Sequence[str]) -> int | None:
    return next((i for i, h in enumerate(header) if h in names), None)


def _cell(row: Sequence[str], index: int) -> str:
    return row[index].strip() if index < len(row) else ""


def _split(cell: str) -> list[str]:
    """Several values in one cell; a quoted display name keeps its commas."""
    if not cell:
        return []
    if "<" in cell or '"' in cell:
        entries = addresses.split_entries(cell.replace(":::", ","))
        if entries is not None:
            return entries
    return [part for part in _SEPARATORS.split(cell) if part]


# --- vCard ----------------------------------------------------------------------------------


def read_vcards(text: str) -> ImportRead:
    read = ImportRead()
    cards, truncated = split_cards(text)
    if not cards and not truncated:
        raise InputError("no vCard found (expected BEGIN:VCARD ... END:VCARD)", field="file")
    for number, card in enumerate(cards, start=1):
        try:
            parsed = vobject.readOne(normalise_quoted_printable(card))
        except Exception as exc:  # vobject raises ParseError and assorted others
            read.problems.append(f"record {number}: skipped, not a readable vCard "
                                 f"({type(exc).__name__}: {str(exc)[:80]})")
            continue
        read.records.append((number, _from_card(parsed)))
    if truncated:
        read.problems.append(f"record {len(cards) + 1}: skipped, the file ends before its "
                             "END:VCARD (cut short? export the file again)")
    return read


def _from_card(card: object) -> NewContact:
    contents: dict[str, list[object]] = getattr(card, "contents", {})
    emails = tuple(str(getattr(e, "value", "")).strip() for e in contents.get("email", []))
    tags: list[str] = []
    for line in contents.get("categories", []):
        value = getattr(line, "value", [])
        tags += [str(v).strip() for v in (value if isinstance(value, list) else [value])]
    return NewContact(_card_name(contents), emails, tuple(t for t in tags if t), Source.VCARD)


def _card_name(contents: dict[str, list[object]]) -> str:
    for line in contents.get("fn", []):
        name = str(getattr(line, "value", "")).strip()
        if name:
            return name
    for line in contents.get("n", []):
        n = getattr(line, "value", None)
        parts = [getattr(n, "given", ""), getattr(n, "family", "")]
        name = " ".join(p if isinstance(p, str) else " ".join(p) for p in parts).strip()
        if name:
            return name
    return ""
