"""Attachment filenames as the recipient's mail client will show and save them. Pure.

A name is judged (blocked extensions) only after it is decoded, and the decoded
name is the one stored and delivered, so the name checked is the name received.
`decode_filename` undoes, repeatedly until nothing changes:

- RFC 2047 encoded-words anywhere in the name (`=?utf-8?b?ZXZpbC5qcw==?=`,
  `=?iso-8859-1?q?evil=2Ejs?=`), as lenient clients decode them even inside a
  parameter; whitespace between two encoded-words is dropped (RFC 2047 6.2);
- an RFC 2231 extended value (`utf-8''evil%2Ejs`), when its charset is real;
- Unicode compatibility forms (NFKC: fullwidth `.js` (U+FF0E U+FF4A U+FF53) is `.js`);
- invisible format characters (Unicode category Cf): right-to-left and other
  bidirectional overrides, zero-width spaces and joiners, soft hyphens;
- trailing dots and spaces, which Windows drops; leading and trailing spaces.

Line breaks, NUL and other control characters are left in place: the caller
refuses them (a header value is never silently cleaned), after judging the name
up to a NUL as C code would read it (`as_c_string`).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from urllib.parse import unquote_to_bytes

__all__ = ["as_c_string", "decode_filename"]

_ROUNDS = 8  # an encoding of an encoding of ...: decoded this many times at most
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(=\?)")
_EXTENDED = re.compile(r"([A-Za-z0-9!#$&+^_`{}~-]+)'([A-Za-z0-9-]*)'(.*)", re.DOTALL)
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")


def decode_filename(name: str) -> str:
    """The name a mail client shows for `name` (see the module docstring)."""
    for _ in range(_ROUNDS):
        decoded = _decode_once(name)
        if decoded == name:
            break
        name = decoded
    return name


def as_c_string(name: str) -> str:
    """The name up to its first NUL, where C code (and some clients) stop reading."""
    return name.split("\x00", 1)[0].rstrip(". ")


def _decode_once(name: str) -> str:
    name = unicodedata.normalize("NFKC", name)
    name = "".join(c for c in name if unicodedata.category(c) != "Cf")
    name = _decode_extended_value(name)
    name = _decode_encoded_words(name)
    return name.strip().rstrip(". ")


# --- RFC 2231 ------------------------------------------------------------------------------

def _decode_extended_value(name: str) -> str:
    """`charset'language'percent-encoded` (RFC 2231 section 4), for a known charset."""
    match = _EXTENDED.fullmatch(name)
    if match is None:
        return name
    charset, _, encoded = match.groups()
    codec = _codec(charset)
    if codec is None:
        return name
    return unquote_to_bytes(encoded).decode(codec, "replace")


def _codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset.split("*", 1)[0]).name  # RFC 2231 5: charset*lang
    except LookupError:
        return None


# --- RFC 2047 ------------------------------------------------------------------------------

def _decode_encoded_words(name: str) -> str:
    if "=?" not in name:
        return name
    joined = _BETWEEN_WORDS.sub(r"\1\2", name)
    return _ENCODED_WORD.sub(_decoded_word, joined)


def _decoded_word(match: re.Match[str]) -> str:
    charset, encoding, text = match.groups()
    codec = _codec(charset) or "utf-8"
    raw = _b_decode(text) if encoding in "bB" else _q_decode(text)
    if raw is None:
        return match.group(0)
    return raw.decode(codec, "replace")


def _b_decode(text: str) -> bytes | None:
    """Leniently, as the most forgiving client: junk dropped, padding optional."""
    text = _NOT_BASE64.sub("", text.split("=", 1)[0])
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _q_decode(text: str) -> bytes:
    raw = text.replace("_", " ").encode("utf-8", "replace")
    return _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
