"""A file's Content-Type with its parameters, and attached messages that can go as they
are. Pure; no I/O.

- A file's type is stored as it is written: `text/calendar; method=REQUEST;
  charset=utf-8`. The parameters that tell a client what the file is (a calendar
  invite's `method`, a text's `charset`) go out with it; `name` is Outbox's, set from
  the filename. `parse_content_type` reads one with the stdlib header registry and
  refuses what the registry finds defective, so every stored type is written back
  the way it was read.
- An attached message (message/rfc822) may only be 7bit, 8bit or binary (RFC 2046
  5.2.1): it goes as it is, 7bit, when its bytes are 7bit lines (`SevenBitLines`).
  Outbox never sends an 8-bit body (its texts are quoted-printable or base64 and the
  plan is fixed before the relay is known), so any other attached message goes as
  the file it is, application/octet-stream in base64, under its .eml name.
"""

from __future__ import annotations

import re
from email.headerregistry import ContentTypeHeader, HeaderRegistry

from outbox.errors import InputError

ATTACHED_MESSAGE = "message/rfc822"
OWN_PARAMS = frozenset({"name"})  # Outbox writes these from the filename
MAX_LINE_OCTETS = 998  # RFC 5322 2.1.1, without the CRLF
BOUNDARY_PREFIX = b"--=_ob_"  # a line Outbox's own boundaries start with (core.mime)

_MIME_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"  # RFC 6838 restricted-name
_BARE = re.compile(f"{_MIME_NAME}/{_MIME_NAME}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 2045 token
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_REGISTRY = HeaderRegistry()

Params = tuple[tuple[str, str], ...]


def bare_type(content_type: str) -> str:
    """'text/calendar' for 'text/calendar; method=REQUEST' (lower case)."""
    return content_type.partition(";")[0].strip().lower()


def parse_content_type(content_type: str, where: str) -> tuple[str, Params]:
    """(type/subtype, its parameters in order) of a stored or submitted type; an
    `InputError` naming `where` for anything the registry finds defective, a
    parameter without a value, one outside printable ASCII, or a duplicate."""
    if not _PRINTABLE.fullmatch(content_type):
        raise InputError("content_type must be one line of printable ASCII (no CR, LF or "
                         "control characters)", field=where)
    bare, _, rest = content_type.partition(";")
    if not _BARE.fullmatch(bare.strip()):
        raise InputError(f"content_type {content_type[:100]!r} must be type/subtype, like "
                         "application/pdf, optionally with parameters (text/calendar; "
                         "method=REQUEST)", field=where)
    if not rest.strip():
        return bare.strip(), ()
    header = _parsed(content_type, where)
    params = tuple((key.lower(), str(value)) for key, value in header.params.items())
    for key, value in params:
        if not _TOKEN.fullmatch(key) or not _PRINTABLE.fullmatch(value):
            raise InputError(f"content_type parameter {key[:50]!r} must be a token with a "
                             "printable ASCII value", field=where)
    return bare.strip(), params


def _parsed(content_type: str, where: str) -> ContentTypeHeader:
    header = _REGISTRY("content-type", content_type)
    if header.defects:
        raise InputError(f"content_type {content_type[:100]!r} is malformed: "
                         f"{str(header.defects[0])[:80]}", field=where)
    return header  # type: ignore[return-value]  # the registry's class for Content-Type


def format_content_type(bare: str, params: Params) -> str:
    """The stored form: `type/subtype; key=value; key="quoted value"`."""
    return "".join([bare, *(f"; {key}={_quoted(value)}" for key, value in params)])


def _quoted(value: str) -> str:
    if _TOKEN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class SevenBitLines:
    """Whether bytes fed chunk by chunk are 7bit (RFC 2045 2.7): ASCII without NUL,
    CR and LF only as CRLF, no line over 998 octets; and no line that starts like
    an Outbox boundary, which would end the part early."""

    def __init__(self) -> None:
        self._carry = b""
        self.ok = True

    def feed(self, chunk: bytes) -> None:
        if not self.ok:
            return
        lines = (self._carry + chunk).split(b"\r\n")
        self._carry = lines.pop()
        self.ok = all(map(_is_seven_bit_line, lines)) and len(self._carry) <= MAX_LINE_OCTETS + 1

    def finish(self) -> bool:
        if self.ok:
            self.ok = _is_seven_bit_line(self._carry)
        self._carry = b""
        return self.ok


def _is_seven_bit_line(line: bytes) -> bool:
    return (len(line) <= MAX_LINE_OCTETS and line.isascii() and b"\0" not in line
            and b"\r" not in line and b"\n" not in line
            and not line.startswith(BOUNDARY_PREFIX))


def is_seven_bit(data: bytes) -> bool:
    """`SevenBitLines` over bytes held in memory."""
    check = SevenBitLines()
    check.feed(data)
    return check.finish()


def as_sent(content_type: str, seven_bit: bool) -> str:
    """The type a file goes out as: an attached message that cannot go as it is
    (not `seven_bit`) goes as the bytes it is."""
    if bare_type(content_type) == ATTACHED_MESSAGE and not seven_bit:
        return "application/octet-stream"
    return content_type
