"""The lexer: one address-list string as a stream of `Token`s.

`tokenize(text)` yields, in order and covering the whole text: words, quoted strings
(unescaped), ``<...>`` contents (stripped), separators (``,`` ``;``), colons, and space
(whitespace or a comment, folded to one space; `has_break` says it held a line break).
An unbalanced quote, bracket or parenthesis, a NUL anywhere, or a line break inside a
quoted string, comment or ``<...>`` raises `Problem`. Where a line break between tokens is
harmless is the splitter's decision (`entries`), not the lexer's. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Final

from outbox.core.addresses.validate import LINE_BREAKS, Problem, has_forbidden, injection

__all__ = ["Kind", "Token", "tokenize"]

_SPACE_RE: Final = re.compile(r"\s+")
_WORD_RE: Final = re.compile(r'[^\s"(),;:<>]+')
_QUOTED_RE: Final = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_QUOTED_PAIR_RE: Final = re.compile(r"\\(.)", re.DOTALL)


class Kind(Enum):
    WORD = "word"
    QUOTED = "quoted"
    ANGLE = "angle"
    SPACE = "space"  # whitespace or a comment
    SEP = "separator"
    COLON = "colon"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    start: int
    end: int
    has_break: bool = False


_SINGLE: Final = {",": Kind.SEP, ";": Kind.SEP, ":": Kind.COLON}


def tokenize(text: str) -> Iterator[Token]:
    pos = 0
    while pos < len(text):
        token = _read_token(text, pos)
        yield token
        pos = token.end


def _read_token(text: str, pos: int) -> Token:
    char = text[pos]
    if char in _SINGLE:
        return Token(_SINGLE[char], char, pos, pos + 1)
    if char == '"':
        return _read_quoted(text, pos)
    if char == "(":
        return _read_comment(text, pos)
    if char == "<":
        return _read_angle(text, pos)
    if char in ")>":
        raise Problem(f"has a {char!r} without its opening partner")
    space = _SPACE_RE.match(text, pos)
    if space:
        has_break = not LINE_BREAKS.isdisjoint(space.group())
        return Token(Kind.SPACE, " ", pos, space.end(), has_break)
    return _read_word(text, pos)


def _read_word(text: str, pos: int) -> Token:
    match = _WORD_RE.match(text, pos)
    end = match.end() if match else pos + 1
    if "\x00" in text[pos:end]:
        raise injection("\x00")
    return Token(Kind.WORD, text[pos:end], pos, end)


def _read_quoted(text: str, pos: int) -> Token:
    match = _QUOTED_RE.match(text, pos)
    if not match:
        raise Problem("has a quote (\") that is never closed")
    if has_forbidden(match.group(1)):
        raise injection(match.group(1))
    unescaped = _QUOTED_PAIR_RE.sub(r"\1", match.group(1))
    return Token(Kind.QUOTED, unescaped, pos, match.end())


def _read_comment(text: str, pos: int) -> Token:
    depth, index = 0, pos
    while index < len(text):
        char = text[index]
        index += 2 if char == "\\" else 1
        depth += (char == "(") - (char == ")")
        if depth == 0:
            if has_forbidden(text[pos:index]):
                raise injection(text[pos:index])
            return Token(Kind.SPACE, " ", pos, index)
    raise Problem("has a '(' that is never closed")


def _read_angle(text: str, pos: int) -> Token:
    end = text.find(">", pos + 1)
    inner = text[pos + 1 : end]
    if end < 0 or "<" in inner:
        raise Problem("has a '<' that is never closed")
    if has_forbidden(inner):
        raise injection(inner)
    return Token(Kind.ANGLE, inner.strip(), pos, end + 1)
