"""The lines of a vCard file before vobject reads them: the file cut into cards, and
vCard 2.1 quoted-printable values made one line each.

vCard 2.1 (phones, Outlook) writes a long quoted-printable value as several lines, each
but the last ending in `=` (a soft line break, RFC 2045 6.7). vobject reads a card line
by line and refuses the continuation lines, so `normalise_quoted_printable` decodes such
a value with `quopri` (in its CHARSET; UTF-8, else Windows-1252, without one) and writes
it back as one line of UTF-8 quoted-printable, which vobject decodes.
"""

from __future__ import annotations

import quopri
import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
BEGIN, END = "BEGIN:VCARD", "END:VCARD"


def split_cards(text: str) -> tuple[list[str], bool]:
    """Each card from its BEGIN:VCARD line to its END:VCARD line, and whether the file
    ends inside a card (its END:VCARD missing: a file cut short)."""
    cards: list[str] = []
    current: list[str] | None = None
    for line in _LINE_BREAK.split(text):
        marker = line.rstrip().upper()
        if current is None:
            if marker == BEGIN:
                current = [line]
            continue
        current.append(line)
        if marker == END:
            cards.append("\r\n".join(current) + "\r\n")
            current = None
    return cards, current is not None


def normalise_quoted_printable(card: str) -> str:
    """`card` with every quoted-printable value on one line, in UTF-8."""
    lines = _LINE_BREAK.split(card)
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        name, colon, value = line.partition(":")
        if not colon or not _is_quoted_printable(name):
            out.append(line)
            continue
        parts = [value]
        while parts[-1].endswith("=") and index < len(lines) and not _ends_card(lines[index]):
            parts.append(lines[index])
            index += 1
        out.append(_one_line(name, "\n".join(parts)))
    return "\r\n".join(out)


def _is_quoted_printable(name: str) -> bool:
    params = [param.strip().upper() for param in name.split(";")[1:]]
    return "QUOTED-PRINTABLE" in params or "ENCODING=QUOTED-PRINTABLE" in params


def _ends_card(line: str) -> bool:
    return line.rstrip().upper() == END


def _one_line(name: str, encoded: str) -> str:
    """The property again, its value decoded (soft line breaks removed) and written as
    one line of UTF-8 quoted-printable."""
    raw = quopri.decodestring(encoded.encode("utf-8"))
    charset = _charset(name)
    value = _text(raw, charset)
    kept = [param for param in name.split(";")
            if param.strip().upper() not in ("QUOTED-PRINTABLE", "ENCODING=QUOTED-PRINTABLE")
            and not param.strip().upper().startswith("CHARSET=")]
    return f"{';'.join(kept)};ENCODING=QUOTED-PRINTABLE;CHARSET=UTF-8:{_encode(value)}"


def _charset(name: str) -> str | None:
    for param in name.split(";")[1:]:
        key, equals, value = param.partition("=")
        if equals and key.strip().upper() == "CHARSET":
            return value.strip().strip('"')
    return None


def _text(raw: bytes, charset: str | None) -> str:
    for encoding in ((charset,) if charset else ()) + ("utf-8",):
        try:
            return raw.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("cp1252", errors="replace")


def _encode(value: str) -> str:
    """Quoted-printable without line breaks: every byte outside printable ASCII, and
    `=`, as =XX."""
    return "".join(chr(byte) if 32 < byte < 127 and byte != 61 else f"={byte:02X}"
                   for byte in value.encode("utf-8"))
