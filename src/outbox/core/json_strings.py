"""Where the string values of one key are in a JSON document, found on its bytes as
they arrive. Pure.

`StringSpans(b"content_base64")` fed a document chunk by chunk records, for each
string value of that key (at any depth), the offsets of its content (between the
quotes). A regular expression skips what does not matter, so a megabyte of base64
is one step. Like `core.json_depth`, it does not validate: the parser does that
afterwards. A value with a `\\u` escape is not reported (it is left in place).

`Base64Decoder` turns such a value, in pieces, into bytes: the JSON escapes a
base64 text can hold (`\\n`, `\\r`, `\\t`, `\\/`) and whitespace are dropped, and
anything else that is not base64 is an error, as `core.attachments.decode_base64`
has it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_OUTSIDE = re.compile(rb'["\\\[\]{}:,]')
_INSIDE = re.compile(rb'["\\]')
_KEY_CAPTURE = 64  # bytes of a string kept to compare with the key
_ESCAPES = {b"n": b"", b"r": b"", b"t": b"", b"/": b"/"}
_BASE64 = re.compile(rb"[A-Za-z0-9+/=]*")


@dataclass(frozen=True, slots=True)
class Span:
    start: int  # offset of the first byte after the opening quote
    end: int  # offset of the closing quote


class StringSpans:
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.spans: list[Span] = []
        self._offset = 0  # of the next chunk
        self._in_string = False
        self._escape_next = False  # a backslash ended the chunk before
        self._string_start = 0
        self._captured = bytearray()
        self._unicode = False
        self._last_string: bytes | None = None  # a string just closed: a key if ':' comes
        self._value_of: bytes | None = None  # the key whose value comes next

    def feed(self, chunk: bytes) -> None:
        pos = 0
        if self._escape_next and chunk:
            self._escaped(chunk[:1])
            pos = 1
        while pos < len(chunk):
            pos = self._inside(chunk, pos) if self._in_string else self._outside(chunk, pos)
        self._offset += len(chunk)

    def _outside(self, chunk: bytes, pos: int) -> int:
        match = _OUTSIDE.search(chunk, pos)
        if match is None:
            return len(chunk)
        char = match.group()
        if char == b'"':
            self._open_string(self._offset + match.end())
        elif char == b":" and self._last_string is not None:
            self._value_of, self._last_string = self._last_string, None
        else:
            self._last_string = self._value_of = None
        return match.end()

    def _open_string(self, start: int) -> None:
        self._in_string = True
        self._string_start = start
        self._captured.clear()
        self._unicode = False

    def _inside(self, chunk: bytes, pos: int) -> int:
        match = _INSIDE.search(chunk, pos)
        end = len(chunk) if match is None else match.start()
        if len(self._captured) <= _KEY_CAPTURE:
            self._captured += chunk[pos:min(end, pos + _KEY_CAPTURE + 1)]
        if match is None:
            return len(chunk)
        if match.group() == b"\\":
            if match.end() == len(chunk):
                self._escape_next = True
                return len(chunk)
            self._escaped(chunk[match.end():match.end() + 1])
            return match.end() + 1
        self._close_string(self._offset + match.start())
        return match.end()

    def _escaped(self, char: bytes) -> None:
        self._escape_next = False
        self._unicode = self._unicode or char == b"u"
        self._captured += b"\\" + char

    def _close_string(self, end: int) -> None:
        self._in_string = False
        if self._value_of == self.key and not self._unicode:
            self.spans.append(Span(self._string_start, end))
        is_value = self._value_of is not None
        self._value_of = None
        self._last_string = None if is_value else bytes(self._captured[:_KEY_CAPTURE + 1])


class InvalidBase64(ValueError):
    pass


class Base64Decoder:
    """feed(piece) -> decoded bytes so far; finish() -> the rest. `InvalidBase64` for
    a character that base64 (or a JSON escape in it) cannot hold."""

    def __init__(self) -> None:
        self._pending = b""  # base64 characters not yet a multiple of 4
        self._backslash = False

    def feed(self, piece: bytes) -> bytes:
        text = self._unescaped(piece)
        text = b"".join(text.split())
        if not _BASE64.fullmatch(text):
            raise InvalidBase64("not base64")
        text = self._pending + text
        cut = len(text) - len(text) % 4
        self._pending = text[cut:]
        return self._decode(text[:cut])

    def finish(self) -> bytes:
        if self._backslash or self._pending:
            raise InvalidBase64("truncated base64")
        return b""

    def _unescaped(self, piece: bytes) -> bytes:
        if self._backslash:
            piece = b"\\" + piece
            self._backslash = False
        if b"\\" not in piece:
            return piece
        parts = piece.split(b"\\")
        out = [parts[0]]
        for index, part in enumerate(parts[1:], start=1):
            if not part:
                if index == len(parts) - 1:
                    self._backslash = True
                    continue
                raise InvalidBase64("a backslash in base64")
            escape = _ESCAPES.get(part[:1])
            if escape is None:
                raise InvalidBase64("an escape base64 cannot hold")
            out += [escape, part[1:]]
        return b"".join(out)

    @staticmethod
    def _decode(text: bytes) -> bytes:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidBase64("not base64") from None
