"""Content transfer encodings and their exact sizes. Pure; no I/O.

- Text: 7bit when it is short-lined ASCII, else quoted-printable, or base64 where
  that is shorter (text mostly outside ASCII); CRLF line ends, one final CRLF.
- Files: base64 in 76-column lines, each ending CRLF. `base64_size(n)` is
  the encoded length of n bytes, so a message's size is known without
  encoding anything; `Base64Lines` encodes a stream chunk by chunk, carrying
  the bytes that do not fill a line to the next chunk.
"""

from __future__ import annotations

import base64
import binascii
import re

LINE_BYTES = 57  # 57 bytes encode to exactly one 76-column line
LINE_CHARS = 76
SEVEN_BIT_MAX_LINE = 900  # longer lines go quoted-printable (998 is the hard limit)

_WIRE_LINES = re.compile(r"\r\n|\r|\n")


def base64_size(size: int) -> int:
    """Bytes of base64 in 76-column CRLF lines for `size` bytes of content."""
    chars = 4 * ((size + 2) // 3)
    lines = (chars + LINE_CHARS - 1) // LINE_CHARS
    return chars + 2 * lines


def base64_lines(data: bytes) -> bytes:
    """`data` as base64 in 76-column lines, each ending CRLF (b"" for no data)."""
    whole = len(data) - len(data) % LINE_BYTES
    if whole < 64 * LINE_BYTES:
        return base64.encodebytes(data).replace(b"\n", b"\r\n")
    return _full_lines(data[:whole] if whole < len(data) else data) + (
        base64.encodebytes(data[whole:]).replace(b"\n", b"\r\n"))


def _full_lines(data: bytes) -> bytes:
    """Whole lines (len(data) is a multiple of 57), about twice as fast as
    `encodebytes` for large blocks: one C-level strided copy per column."""
    encoded = binascii.b2a_base64(data, newline=False)
    lines = len(encoded) // LINE_CHARS
    out = bytearray(lines * (LINE_CHARS + 2))
    for column in range(LINE_CHARS):
        out[column::LINE_CHARS + 2] = encoded[column::LINE_CHARS]
    out[LINE_CHARS::LINE_CHARS + 2] = b"\r" * lines
    out[LINE_CHARS + 1::LINE_CHARS + 2] = b"\n" * lines
    return bytes(out)


class Base64Lines:
    """Incremental `base64_lines`: feed chunks of any size, then `finish()`.
    The concatenated output equals `base64_lines(all the data)`."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk if self._carry else chunk
        whole = len(data) - len(data) % LINE_BYTES
        self._carry = data[whole:]
        return base64_lines(data[:whole]) if whole else b""

    def finish(self) -> bytes:
        carry, self._carry = self._carry, b""
        return base64_lines(carry)


def wire_lines(text: str) -> list[str]:
    """The lines of `text` as they go on the wire: CR, LF and CRLF all end a
    line (form feed and Unicode separators do not), and a final line end is
    implied. "" is one empty line."""
    lines = _WIRE_LINES.split(text)
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


def encode_text(text: str) -> tuple[bytes, str]:
    """The body bytes (CRLF line ends, a final CRLF) and the transfer encoding:
    7bit keeps short-lined ASCII readable; anything else is quoted-printable, or base64
    where that is shorter. Quoted-printable writes each byte of a non-ASCII character
    as three: Cyrillic or CJK text tripled (a 12 MB body of 'é' was refused as 37 MB
    over a 25 MB limit, found by a stranger pass), where base64 adds a third."""
    lines = wire_lines(text)
    if is_seven_bit(text, lines):
        return ("\r\n".join(lines) + "\r\n").encode("ascii"), "7bit"
    quoted = b"".join(_quoted_printable(line) for line in lines)
    if text.isascii():  # long lines or a control character: no byte grows past three
        return quoted, "quoted-printable"
    canonical = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    if base64_size(len(canonical)) < len(quoted):
        return base64_lines(canonical), "base64"
    return quoted, "quoted-printable"


def is_seven_bit(text: str, lines: list[str]) -> bool:
    return (text.isascii() and "\x00" not in text
            and all(len(line) <= SEVEN_BIT_MAX_LINE for line in lines))


def _quoted_printable(line: str) -> bytes:
    """One hard line: soft breaks keep it under 76 columns; trailing blanks
    and every non-printable byte are escaped."""
    encoded = binascii.b2a_qp(line.encode("utf-8"), quotetabs=False, istext=False)
    return encoded.replace(b"=\n", b"=\r\n") + b"\r\n"
