"""Header fields on the wire: folded, encoded, and safe. Pure; no I/O.

Every function returns complete lines (`Name: value` CRLF, folded at 78
columns where the value allows it, never past 998). Values are never taken
raw from users without this module: a CR or LF cannot survive it (it is
refused upstream by `compose`, and any control character left is
RFC 2047-encoded here, so no input can start a new header line).

- `unstructured(name, value)`: Subject and custom headers. ASCII text is
  folded at spaces; anything else (non-ASCII, control characters, text that
  looks like an encoded-word, a word too long to fold) becomes RFC 2047
  encoded-words (`=?utf-8?q?...?=` or `?b?`, whichever is shorter).
- `addresses(name, formatted)`: From, To, Cc, Reply-To from the stored
  `Address.formatted()` strings; non-ASCII display names are encoded-words,
  a non-ASCII local part stays UTF-8 (RFC 6532; the relay must offer SMTPUTF8).
- `with_params(name, value, params)`: Content-Type and Content-Disposition;
  non-ASCII or long parameter values use RFC 2231 (`filename*=utf-8''...`,
  with `*0*`, `*1*` continuations), `name` on Content-Type also carries an
  RFC 2047 form for old clients.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Sequence

MAX_LINE = 78  # RFC 5322 "SHOULD"
HARD_LIMIT = 998  # RFC 5322 "MUST"
_WORD_LIMIT = 75  # RFC 2047: one encoded-word
_CRLF = "\r\n"

_PLAIN = re.compile(r"[\x20-\x7e\t]*")
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_ATTR_CHAR = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                       b"!#$&+-.^_`|~")
_FORMATTED = re.compile(r"(?P<display>.+) <(?P<addr>[^<>]+)>", re.DOTALL)


# --- unstructured fields ---------------------------------------------------------------

def unstructured(name: str, value: str) -> str:
    """`Name: value` CRLF; leading blanks of the value are not significant on the wire."""
    value = value.lstrip(" \t")
    if _is_plain(value):
        folded = _fold(f"{name}:", [f" {word}" for word in value.split(" ")])
        if folded is not None:
            return folded
    return _fold_encoded(f"{name}:", encoded_words(value, len(name) + 2))


def _is_plain(value: str) -> bool:
    return _PLAIN.fullmatch(value) is not None and "=?" not in value


def _fold(start: str, pieces: Sequence[str]) -> str | None:
    """Join pieces (each begins with its blank) into lines of at most 78 columns,
    breaking only before a piece that carries text; None if a line must pass 998."""
    lines: list[str] = []
    line = start
    for piece in pieces:
        breakable = piece.strip(" \t") != "" and line.strip(" \t") not in ("", start)
        if breakable and len(line) + len(piece) > MAX_LINE:
            lines.append(line)
            line = piece
        else:
            line += piece
    lines.append(line)
    if any(len(text) > HARD_LIMIT for text in lines):
        return None
    return _CRLF.join(lines) + _CRLF


def _fold_encoded(start: str, words: Sequence[str]) -> str:
    """Encoded-words one after another, folded between words."""
    folded = _fold(start, [f" {word}" for word in words])
    assert folded is not None  # each word is at most 75 characters
    return folded


def encoded_words(text: str, first_offset: int = 0) -> list[str]:
    """RFC 2047 encoded-words for `text` in unstructured context ('q' or 'b',
    the shorter), split between characters so no word passes 75 columns.
    `first_offset`: columns already used on the first line."""
    data = text.encode("utf-8")
    q_length = sum(1 if b in _Q_SAFE or b == 0x20 else 3 for b in data)
    b_length = 4 * ((len(data) + 2) // 3)
    encode = _q_word if q_length <= b_length else _b_word
    return _split_words(text, encode, first_offset)


def _q_word(data: bytes) -> str:
    out = []
    for byte in data:
        if byte in _Q_SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("_")
        else:
            out.append(f"={byte:02X}")
    return "=?utf-8?q?" + "".join(out) + "?="


def _b_word(data: bytes) -> str:
    return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="


def _split_words(text: str, encode: Callable[[bytes], str], first_offset: int) -> list[str]:
    words: list[str] = []
    chunk = ""
    limit = min(_WORD_LIMIT, MAX_LINE - 1 - first_offset)
    for char in text:
        candidate = chunk + char
        if chunk and len(encode(candidate.encode("utf-8"))) > limit:
            words.append(encode(chunk.encode("utf-8")))
            chunk, limit = char, _WORD_LIMIT
        else:
            chunk = candidate
    words.append(encode(chunk.encode("utf-8")))
    return words


# --- address fields --------------------------------------------------------------------

def addresses(name: str, formatted: Iterable[str]) -> str:
    """An address-list field from `Address.formatted()` strings, comma-separated."""
    pieces: list[str] = []
    entries = list(formatted)
    for index, entry in enumerate(entries):
        tokens = _address_tokens(entry)
        if index < len(entries) - 1:
            tokens[-1] += ","
        pieces += [f" {token}" for token in tokens]
    folded = _fold(f"{name}:", pieces)
    if folded is None:
        raise ValueError(f"an address in {name} is too long for a header line")
    return folded


def _address_tokens(entry: str) -> list[str]:
    match = _FORMATTED.fullmatch(entry)
    if match is None:
        return [entry]
    display, addr = match.group("display"), match.group("addr")
    if display.isascii():
        return [display, f"<{addr}>"]
    return [*_phrase_words(_unquote(display)), f"<{addr}>"]


def _unquote(display: str) -> str:
    if len(display) >= 2 and display[0] == display[-1] == '"':
        return re.sub(r"\\(.)", r"\1", display[1:-1])
    return display


def _phrase_words(text: str) -> list[str]:
    """Encoded-words for a display name: 'q' in a phrase allows fewer characters
    (RFC 2047 5(3)), which `_Q_SAFE` already respects."""
    return encoded_words(text, first_offset=0)


# --- fields with parameters ------------------------------------------------------------

def with_params(name: str, value: str, params: Sequence[tuple[str, str]], *,
                legacy_names: Iterable[str] = ()) -> str:
    """`Name: value; key="v"; ...`, one parameter per folded line when long.
    Parameters in `legacy_names` with a non-ASCII value are written as RFC 2047
    inside quotes instead of RFC 2231: old clients read an attachment's name
    from Content-Type `name` that way (as Thunderbird writes it)."""
    legacy = frozenset(legacy_names)
    rendered: list[str] = []
    for key, text in params:
        if key in legacy and not text.isascii():
            words = encoded_words(text, len(key) + 3)  # folded between words, in the quotes
            rendered.append(f'{key}="' + "\r\n ".join(words) + '"')
        else:
            rendered += param_segments(key, text)
    one_line = f"{name}: {value}" + "".join(f"; {segment}" for segment in rendered)
    if len(one_line) <= MAX_LINE:
        return one_line + _CRLF
    lines = [f"{name}: {value}" + (";" if rendered else "")]
    for index, segment in enumerate(rendered):
        lines.append(f" {segment}" + (";" if index < len(rendered) - 1 else ""))
    return _CRLF.join(lines) + _CRLF


def param_segments(key: str, value: str) -> list[str]:
    """`key="value"`, or RFC 2231 for non-ASCII or long values: `key*=utf-8''...`,
    or continuations `key*0*=...`, `key*1*=...` of at most ~70 columns each."""
    if value.isascii() and _PLAIN.fullmatch(value) and len(key) + len(value) < 60:
        return [f"{key}={quote_string(value)}"]
    encoded = _percent_pieces(value.encode("utf-8"))
    if len(key) + sum(len(p) for p in encoded) < 60:
        return [f"{key}*=utf-8''{''.join(encoded)}"]
    return [f"{key}*{index}*={'utf-8' + chr(39) * 2 if index == 0 else ''}{chunk}"
            for index, chunk in enumerate(_chunks(encoded, 60 - len(key)))]


def quote_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _percent_pieces(data: bytes) -> list[str]:
    return [chr(b) if b in _ATTR_CHAR else f"%{b:02X}" for b in data]


def _chunks(pieces: Sequence[str], width: int) -> list[str]:
    """Join pieces into strings of at most `width` (a %XX is never split)."""
    chunks: list[str] = []
    chunk = ""
    for piece in pieces:
        if chunk and len(chunk) + len(piece) > width:
            chunks.append(chunk)
            chunk = ""
        chunk += piece
    chunks.append(chunk)
    return chunks
