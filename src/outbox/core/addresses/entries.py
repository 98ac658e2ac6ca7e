"""The splitter: a token stream cut into entries, one mailbox each, and each entry into
its display name and addr-spec text.

`entries(text, splitter)` yields an `Entry` per separator (``,`` or ``;``) plus the last
one; an entry without significant tokens is an empty slot, left for the caller to skip.
A group (``Name: a, b;``) yields its members: the name is dropped, ``;`` closes it, and
the end of the text closes one still open. A line break between tokens passes only next
to a separator or a colon, or at either end of the text; anywhere else it raises the
injection `Problem`.
`split_mailbox(entry)` gives ``(display name, addr-spec text)`` without validating
either. The `Splitter` is passed in so that, after a `Problem`, the caller can read where
the failing entry started (`splitter.start`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from outbox.core.addresses.tokens import Kind, Token, tokenize
from outbox.core.addresses.validate import Problem, injection

__all__ = ["Entry", "Splitter", "entries", "split_mailbox"]


@dataclass(frozen=True, slots=True)
class Entry:
    tokens: list[Token]
    start: int
    end: int

    @property
    def significant(self) -> list[Token]:
        return [t for t in self.tokens if t.kind is not Kind.SPACE]


class Splitter:
    """Cuts a token stream into entries at separators, and keeps track of groups."""

    def __init__(self) -> None:
        self.tokens: list[Token] = []
        self.start = 0
        self.in_group = False
        self.after_separator = True  # the start of a value counts as a separator
        self.pending_break: Token | None = None

    def feed(self, token: Token) -> Entry | None:
        if token.kind is Kind.SPACE:
            if token.has_break and not self.after_separator and not self.pending_break:
                self.pending_break = token
            self.tokens.append(token)
            return None
        self._check_break(token)
        self.after_separator = token.kind in (Kind.SEP, Kind.COLON)
        if token.kind is Kind.COLON:
            self._open_group(token)
        elif token.kind is Kind.SEP:
            return self._close_entry(token)
        else:
            self.tokens.append(token)
        return None

    def finish(self, end: int) -> Entry:
        return Entry(self.tokens, self.start, end)

    def _check_break(self, token: Token) -> None:
        """A line break is only harmless right before a separator (or after one)."""
        pending, self.pending_break = self.pending_break, None
        if pending and token.kind not in (Kind.SEP, Kind.COLON):
            raise injection("\n")

    def _open_group(self, colon: Token) -> None:
        name = Entry(self.tokens, self.start, colon.start).significant
        if self.in_group:
            raise Problem("has a ':' inside a group (groups cannot nest)")
        if not name:
            raise Problem("has a group (':') without a name")
        if any(t.kind is Kind.ANGLE or (t.kind is Kind.WORD and "@" in t.text) for t in name):
            raise Problem("has an unexpected ':' after an address")
        self.in_group = True
        self.tokens, self.start = [], colon.end

    def _close_entry(self, separator: Token) -> Entry:
        entry = Entry(self.tokens, self.start, separator.start)
        if separator.text == ";":
            self.in_group = False
        self.tokens, self.start = [], separator.end
        return entry


def entries(text: str, splitter: Splitter) -> Iterator[Entry]:
    for token in tokenize(text):
        entry = splitter.feed(token)
        if entry is not None:
            yield entry
    yield splitter.finish(len(text))


def split_mailbox(entry: Entry) -> tuple[str, str]:
    """The display name and the addr-spec text of one entry."""
    significant = entry.significant
    angles = [t for t in significant if t.kind is Kind.ANGLE]
    if not angles:
        return "", _bare_addr_spec(significant)
    if len(angles) > 1:
        raise Problem("has two <addresses>; separate addresses with a comma")
    if significant[-1] is not angles[0]:
        raise Problem("has text after the closing '>'")
    return _phrase(entry.tokens[: entry.tokens.index(angles[0])]), angles[0].text


def _bare_addr_spec(significant: list[Token]) -> str:
    if len(significant) == 1 and significant[0].kind is Kind.WORD:
        return significant[0].text
    if not any("@" in t.text for t in significant):
        raise Problem("is not an email address (it has no @)")
    if any(t.kind is Kind.QUOTED for t in significant):
        raise Problem("has quoted text but no <address> (quoted local parts are not supported)")
    raise Problem("has a space in it; write it as Name <address>, or remove the space")


def _phrase(tokens: list[Token]) -> str:
    """A display name: words and quoted strings, whitespace between them folded to one space."""
    parts: list[str] = []
    space = False
    for token in tokens:
        if token.kind is Kind.SPACE:
            space = bool(parts)
            continue
        if space:
            parts.append(" ")
        parts.append(token.text)
        space = False
    return "".join(parts).strip()
