"""Recipient addresses: parse, validate and de-duplicate them. Pure: no I/O, no DNS.

Accepted, in one string or in a list of strings (an element may hold several addresses):

- separators ``,`` and ``;``, mixed; empty entries and trailing separators are ignored;
- ``a@x.test``, ``<a@x.test>``, ``Ann <a@x.test>``, ``"Doe, John" <j@x.test>`` (a quoted
  display name may hold commas, semicolons and ``\\"``-escaped quotes);
- RFC 5322 groups: ``Team: a@x.test, b@x.test;`` gives its members (the group's name is not
  kept); ``undisclosed-recipients:;`` gives none; a group still open at the end of a value
  is closed there;
- comments ``(like this)`` count as whitespace and are dropped;
- whitespace between tokens. A line break only where it cannot reach a header: next to a
  separator or at either end of a value (a pasted list). A line break anywhere else, or a NUL
  anywhere, is refused as header injection, never cleaned.

Validation is email-validator in syntax mode (never DNS). Not supported: quoted local parts
(``"john doe"@x.test``), IP-literal domains, RFC 2047 encoded words in input (kept literally).
Special-use domains (``.test``, ``.example``, ``.invalid``, ``.localhost``) pass, so Outbox
works offline. Domains go out as IDNA punycode; a non-ASCII local part needs a relay with
SMTPUTF8 and is refused unless ``allow_smtputf8=True``.

Errors are `InvalidAddress` with ``field`` as a JSON path: ``to[2]`` is element 2 of a list,
or the third address of a single string; a single mailbox (``from``) has no index.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from functools import lru_cache
from typing import Final

from email_validator import EmailNotValidError, validate_email

from outbox.errors import InvalidAddress

__all__ = [
    "LINE_BREAKS",
    "SPECIAL_USE_DOMAINS",
    "Address",
    "Recipient",
    "RecipientKind",
    "RecipientPlan",
    "address_errors",
    "format_addresses",
    "parse_addresses",
    "parse_mailbox",
    "plan_recipients",
]

#: Every character `str.splitlines` breaks on; none of them may reach a header.
LINE_BREAKS: Final = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")
#: Accepted although email-validator would refuse some (RFC 2606, RFC 6761): the name and
#: its subdomains.
SPECIAL_USE_DOMAINS: Final = ("test", "example", "invalid", "localhost")

_FORBIDDEN: Final = LINE_BREAKS | {"\x00"}
_ATEXT: Final = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_SPACE_RE: Final = re.compile(r"\s+")
_WORD_RE: Final = re.compile(r'[^\s"(),;:<>]+')
_QUOTED_RE: Final = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_QUOTED_PAIR_RE: Final = re.compile(r"\\(.)", re.DOTALL)
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")  # Cc but tab, Cs
_SHOWN_MAX: Final = 80
_MAX_ADDRESS_OCTETS: Final = 254  # RFC 3696 errata / RFC 5321 path limit, without <>

_INJECTION_HINT: Final = "put each address on one line and separate addresses with commas"
_SMTPUTF8: Final = (
    "has non-ASCII characters before the @, which needs a relay that supports SMTPUTF8"
)
_SMTPUTF8_HINT: Final = "use an ASCII address, or a relay that supports SMTPUTF8"
_SYNTAX_HINT: Final = 'write addresses as a@example.com or "Name, Display" <a@example.com>'


# --- the value ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox, valid by construction (the constructor raises `InvalidAddress`).

    `domain` is kept as given, for display; `ascii_domain` is its lowercase IDNA (punycode)
    form, used on the wire. Equality compares the given fields; `dedupe_key` says whether two
    addresses are the same mailbox.
    """

    display_name: str
    local: str
    domain: str
    ascii_domain: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            _check_display_name(self.display_name)
            ascii_domain = _checked_ascii_domain(self.local, self.domain)
        except _Problem as problem:
            shown = _show(f"{self.display_name} <{self.local}@{self.domain}>")
            raise InvalidAddress(f"{shown} {problem.reason}", hint=problem.hint) from None
        object.__setattr__(self, "ascii_domain", ascii_domain)

    @property
    def addr_spec(self) -> str:
        """``local@ascii-domain``: what goes in the envelope (MAIL FROM / RCPT TO)."""
        return f"{self.local}@{self.ascii_domain}"

    @property
    def needs_smtputf8(self) -> bool:
        """A non-ASCII local part can only be sent through a relay offering SMTPUTF8."""
        return not self.local.isascii()

    @property
    def dedupe_key(self) -> tuple[str, str]:
        """Same mailbox: the local part keeps its case (NFC), the domain is case-insensitive."""
        return unicodedata.normalize("NFC", self.local), self.ascii_domain

    def formatted(self) -> str:
        """The header form: ``"Doe, John" <j@xn--bcher-kva.test>``, or the bare addr-spec.

        The display name is quoted per RFC 5322 when it needs to be. A non-ASCII display name
        stays Unicode here: the MIME writer (``email.policy.SMTP``) RFC 2047-encodes it.
        """
        if not self.display_name:
            return self.addr_spec
        return f"{_quote_phrase(self.display_name)} <{self.addr_spec}>"


def format_addresses(addresses: Sequence[Address]) -> str:
    """A header value for a list of addresses; `parse_addresses` reads it back unchanged."""
    return ", ".join(address.formatted() for address in addresses)


class RecipientKind(StrEnum):
    TO = "to"
    CC = "cc"
    BCC = "bcc"


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient and the field it first appeared in."""

    address: Address
    kind: RecipientKind


@dataclass(frozen=True, slots=True)
class RecipientPlan:
    """Who sees what. `to` and `cc` are the header lists; Bcc never appears in a header.

    `envelope` is the union of To, Cc and Bcc, one entry per mailbox, in that order; the first
    occurrence wins (to > cc > bcc) and a later duplicate is dropped from its header list too.
    """

    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    envelope: tuple[Recipient, ...]

    @property
    def bcc(self) -> tuple[Address, ...]:
        return tuple(r.address for r in self.envelope if r.kind is RecipientKind.BCC)

    @property
    def needs_smtputf8(self) -> bool:
        return any(r.address.needs_smtputf8 for r in self.envelope)


# --- public functions -----------------------------------------------------------------------


def parse_addresses(
    value: str | Sequence[str] | None, field: str, *, allow_smtputf8: bool = False
) -> list[Address]:
    """Every address in `value` (one string, or a list of strings), in order.

    Raises `InvalidAddress` for the first bad entry, with `field` like ``to[2]``.
    """
    addresses: list[Address] = []
    for result in _results(value, field, allow_smtputf8):
        if isinstance(result, InvalidAddress):
            raise result
        addresses.append(result)
    return addresses


def address_errors(
    value: str | Sequence[str] | None, field: str, *, allow_smtputf8: bool = False
) -> list[InvalidAddress]:
    """One error per bad entry (a broken quote or bracket ends the scan of its string)."""
    return [r for r in _results(value, field, allow_smtputf8) if isinstance(r, InvalidAddress)]


def parse_mailbox(value: str, field: str, *, allow_smtputf8: bool = False) -> Address:
    """Exactly one address (for ``from`` and ``reply_to``), else `InvalidAddress`."""
    if not isinstance(value, str):
        raise InvalidAddress(f"{field}: expected one address as a string", field=field)
    addresses: list[Address] = []
    for result in _parse_text(value, lambda _index: field, allow_smtputf8):
        if isinstance(result, InvalidAddress):
            raise result
        addresses.append(result)
    if len(addresses) != 1:
        found = f"found {len(addresses)}" if addresses else "found none"
        raise InvalidAddress(f"{field}: {_show(value)} must be exactly one address, {found}",
                             field=field, hint=_SYNTAX_HINT)
    return addresses[0]


def plan_recipients(
    to: str | Sequence[str] | None = None,
    cc: str | Sequence[str] | None = None,
    bcc: str | Sequence[str] | None = None,
    *,
    allow_smtputf8: bool = False,
) -> RecipientPlan:
    """Parse, validate and de-duplicate To, Cc and Bcc in one call.

    Raises `InvalidAddress` for the first bad address (fields ``to``, ``cc``, ``bcc``), or
    when there is no recipient at all.
    """
    fields = ((RecipientKind.TO, to), (RecipientKind.CC, cc), (RecipientKind.BCC, bcc))
    seen: set[tuple[str, str]] = set()
    envelope: list[Recipient] = []
    for kind, value in fields:
        for address in parse_addresses(value, kind.value, allow_smtputf8=allow_smtputf8):
            if address.dedupe_key not in seen:
                seen.add(address.dedupe_key)
                envelope.append(Recipient(address, kind))
    if not envelope:
        raise InvalidAddress("to: a message needs at least one recipient in to, cc or bcc",
                             field="to")
    return RecipientPlan(
        to=tuple(r.address for r in envelope if r.kind is RecipientKind.TO),
        cc=tuple(r.address for r in envelope if r.kind is RecipientKind.CC),
        envelope=tuple(envelope),
    )


def split_entries(text: str) -> list[str] | None:
    """The text of each non-empty entry of one string, as `parse_addresses` cuts it
    (separators outside quotes, brackets and comments; a group gives its members),
    without validating any; None when the string does not split cleanly (then
    `parse_addresses` says why). Used to find names to expand (`core.expand`)."""
    splitter = _Splitter()
    try:
        return [text[e.start : e.end].strip() for e in _entries(text, splitter) if e.significant]
    except _Problem:
        return None


# --- validation of one mailbox --------------------------------------------------------------


class _Problem(Exception):
    """Why an entry is not an address; becomes `InvalidAddress` once its field is known."""

    def __init__(self, reason: str, *, hint: str | None = _SYNTAX_HINT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def _has_forbidden(text: str) -> bool:
    return not _FORBIDDEN.isdisjoint(text)


def _injection(text: str) -> _Problem:
    what = "a NUL character" if "\x00" in text else "a line break inside an address"
    return _Problem(f"has {what} (refused: it could inject a header)", hint=_INJECTION_HINT)


def _check_display_name(name: str) -> None:
    if _has_forbidden(name):
        raise _injection(name)
    if _CONTROL_RE.search(name):
        raise _Problem("has a control character in its display name")


@lru_cache(maxsize=4096)
def _checked_ascii_domain(local: str, domain: str) -> str:
    """Validate ``local@domain`` (syntax only) and return the domain's ASCII form."""
    if _has_forbidden(local) or _has_forbidden(domain):
        raise _injection(local + domain)
    stand_in, special = _stand_in_for_special_use(domain)
    try:
        checked = validate_email(
            f"{local}@{stand_in}",
            allow_smtputf8=True,  # the caller's policy is applied by the parser
            check_deliverability=False,
            test_environment=True,
            globally_deliverable=True,
        )
    except EmailNotValidError as exc:
        raise _Problem(f"is not a valid address: {_as_clause(str(exc))}") from None
    ascii_domain = checked.ascii_domain
    if special:
        ascii_domain = ascii_domain[: -len("test")] + special
    if len(local.encode()) + 1 + len(ascii_domain) > _MAX_ADDRESS_OCTETS:
        raise _Problem(f"is longer than {_MAX_ADDRESS_OCTETS} characters")
    return ascii_domain


def _stand_in_for_special_use(domain: str) -> tuple[str, str | None]:
    """email-validator refuses ``.invalid`` and ``.localhost`` outright; check such a domain
    as the same name under ``.test`` (which it accepts in test mode), then put the real
    suffix back. Returns the domain to check and the special name it ended with."""
    for name in SPECIAL_USE_DOMAINS:
        head, tail = domain[: -len(name)], domain[-len(name):]
        if tail.isascii() and tail.lower() == name and (not head or head.endswith(".")):
            return head + "test", name
    return domain, None


def _as_clause(sentence: str) -> str:
    sentence = sentence.strip().rstrip(".")
    return sentence[:1].lower() + sentence[1:]


def _quote_phrase(name: str) -> str:
    words = name.split(" ")
    if "=?" not in name and all(_is_atom(word) for word in words):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _is_atom(word: str) -> bool:
    return bool(word) and all(c in _ATEXT or (not c.isascii() and not c.isspace()) for c in word)


# --- tokens ---------------------------------------------------------------------------------


class _Kind(Enum):
    WORD = "word"
    QUOTED = "quoted"
    ANGLE = "angle"
    SPACE = "space"  # whitespace or a comment
    SEP = "separator"
    COLON = "colon"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    start: int
    end: int
    has_break: bool = False


_SINGLE: Final = {",": _Kind.SEP, ";": _Kind.SEP, ":": _Kind.COLON}


def _tokenize(text: str) -> Iterator[_Token]:
    pos = 0
    while pos < len(text):
        token = _read_token(text, pos)
        yield token
        pos = token.end


def _read_token(text: str, pos: int) -> _Token:
    char = text[pos]
    if char in _SINGLE:
        return _Token(_SINGLE[char], char, pos, pos + 1)
    if char == '"':
        return _read_quoted(text, pos)
    if char == "(":
        return _read_comment(text, pos)
    if char == "<":
        return _read_angle(text, pos)
    if char in ")>":
        raise _Problem(f"has a {char!r} without its opening partner")
    space = _SPACE_RE.match(text, pos)
    if space:
        has_break = not LINE_BREAKS.isdisjoint(space.group())
        return _Token(_Kind.SPACE, " ", pos, space.end(), has_break)
    return _read_word(text, pos)


def _read_word(text: str, pos: int) -> _Token:
    match = _WORD_RE.match(text, pos)
    end = match.end() if match else pos + 1
    if "\x00" in text[pos:end]:
        raise _injection("\x00")
    return _Token(_Kind.WORD, text[pos:end], pos, end)


def _read_quoted(text: str, pos: int) -> _Token:
    match = _QUOTED_RE.match(text, pos)
    if not match:
        raise _Problem("has a quote (\") that is never closed")
    if _has_forbidden(match.group(1)):
        raise _injection(match.group(1))
    unescaped = _QUOTED_PAIR_RE.sub(r"\1", match.group(1))
    return _Token(_Kind.QUOTED, unescaped, pos, match.end())


def _read_comment(text: str, pos: int) -> _Token:
    depth, index = 0, pos
    while index < len(text):
        char = text[index]
        index += 2 if char == "\\" else 1
        depth += (char == "(") - (char == ")")
        if depth == 0:
            if _has_forbidden(text[pos:index]):
                raise _injection(text[pos:index])
            return _Token(_Kind.SPACE, " ", pos, index)
    raise _Problem("has a '(' that is never closed")


def _read_angle(text: str, pos: int) -> _Token:
    end = text.find(">", pos + 1)
    inner = text[pos + 1 : end]
    if end < 0 or "<" in inner:
        raise _Problem("has a '<' that is never closed")
    if _has_forbidden(inner):
        raise _injection(inner)
    return _Token(_Kind.ANGLE, inner.strip(), pos, end + 1)


# --- entries: one mailbox each --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    tokens: list[_Token]
    start: int
    end: int

    @property
    def significant(self) -> list[_Token]:
        return [t for t in self.tokens if t.kind is not _Kind.SPACE]


class _Splitter:
    """Cuts a token stream into entries at separators, and keeps track of groups."""

    def __init__(self) -> None:
        self.tokens: list[_Token] = []
        self.start = 0
        self.in_group = False
        self.after_separator = True  # the start of a value counts as a separator
        self.pending_break: _Token | None = None

    def feed(self, token: _Token) -> _Entry | None:
        if token.kind is _Kind.SPACE:
            if token.has_break and not self.after_separator and not self.pending_break:
                self.pending_break = token
            self.tokens.append(token)
            return None
        self._check_break(token)
        self.after_separator = token.kind in (_Kind.SEP, _Kind.COLON)
        if token.kind is _Kind.COLON:
            self._open_group(token)
        elif token.kind is _Kind.SEP:
            return self._close_entry(token)
        else:
            self.tokens.append(token)
        return None

    def finish(self, end: int) -> _Entry:
        return _Entry(self.tokens, self.start, end)

    def _check_break(self, token: _Token) -> None:
        """A line break is only harmless right before a separator (or after one)."""
        pending, self.pending_break = self.pending_break, None
        if pending and token.kind not in (_Kind.SEP, _Kind.COLON):
            raise _injection("\n")

    def _open_group(self, colon: _Token) -> None:
        name = _Entry(self.tokens, self.start, colon.start).significant
        if self.in_group:
            raise _Problem("has a ':' inside a group (groups cannot nest)")
        if not name:
            raise _Problem("has a group (':') without a name")
        if any(t.kind is _Kind.ANGLE or (t.kind is _Kind.WORD and "@" in t.text) for t in name):
            raise _Problem("has an unexpected ':' after an address")
        self.in_group = True
        self.tokens, self.start = [], colon.end

    def _close_entry(self, separator: _Token) -> _Entry:
        entry = _Entry(self.tokens, self.start, separator.start)
        if separator.text == ";":
            self.in_group = False
        self.tokens, self.start = [], separator.end
        return entry


def _entries(text: str, splitter: _Splitter) -> Iterator[_Entry]:
    for token in _tokenize(text):
        entry = splitter.feed(token)
        if entry is not None:
            yield entry
    yield splitter.finish(len(text))


def _split_mailbox(entry: _Entry) -> tuple[str, str]:
    """The display name and the addr-spec text of one entry."""
    significant = entry.significant
    angles = [t for t in significant if t.kind is _Kind.ANGLE]
    if not angles:
        return "", _bare_addr_spec(significant)
    if len(angles) > 1:
        raise _Problem("has two <addresses>; separate addresses with a comma")
    if significant[-1] is not angles[0]:
        raise _Problem("has text after the closing '>'")
    return _phrase(entry.tokens[: entry.tokens.index(angles[0])]), angles[0].text


def _bare_addr_spec(significant: list[_Token]) -> str:
    if len(significant) == 1 and significant[0].kind is _Kind.WORD:
        return significant[0].text
    if not any("@" in t.text for t in significant):
        raise _Problem("is not an email address (it has no @)")
    if any(t.kind is _Kind.QUOTED for t in significant):
        raise _Problem("has quoted text but no <address> (quoted local parts are not supported)")
    raise _Problem("has a space in it; write it as Name <address>, or remove the space")


def _phrase(tokens: list[_Token]) -> str:
    """A display name: words and quoted strings, whitespace between them folded to one space."""
    parts: list[str] = []
    space = False
    for token in tokens:
        if token.kind is _Kind.SPACE:
            space = bool(parts)
            continue
        if space:
            parts.append(" ")
        parts.append(token.text)
        space = False
    return "".join(parts).strip()


def _address_from(display_name: str, addr: str, allow_smtputf8: bool) -> Address:
    if not addr:
        raise _Problem("has an empty <>")
    if addr.startswith('"'):
        raise _Problem("has a quoted local part, which Outbox does not support")
    if "@" not in addr:
        raise _Problem("is not an email address (it has no @)")
    if addr.count("@") > 1:
        raise _Problem("has more than one @")
    local, domain = addr.split("@")
    _check_display_name(display_name)
    _checked_ascii_domain(local, domain)
    if not allow_smtputf8 and not local.isascii():
        raise _Problem(_SMTPUTF8, hint=_SMTPUTF8_HINT)
    return Address(display_name, local, domain)


# --- driving the parse ----------------------------------------------------------------------


def _results(
    value: str | Sequence[str] | None, field: str, allow_smtputf8: bool
) -> Iterator[Address | InvalidAddress]:
    if value is None:
        return
    if isinstance(value, str):
        yield from _parse_text(value, lambda index: f"{field}[{index}]", allow_smtputf8)
        return
    if not isinstance(value, list | tuple):
        yield InvalidAddress(f"{field}: expected a string or a list of strings", field=field)
        return
    for position, element in enumerate(value):
        label = f"{field}[{position}]"
        if not isinstance(element, str):
            yield InvalidAddress(f"{label}: expected a string", field=label)
            continue
        yield from _parse_text(element, _same_label(label), allow_smtputf8)


def _same_label(label: str) -> Callable[[int], str]:
    """Every entry of one list element is named by the element: ``to[3]``."""
    return lambda _index: label


def _parse_text(
    text: str, label: Callable[[int], str], allow_smtputf8: bool
) -> Iterator[Address | InvalidAddress]:
    """Addresses of one string, or an error per bad entry. `label(i)` names entry i's field."""
    splitter = _Splitter()
    index = 0
    try:
        for entry in _entries(text, splitter):
            if entry.significant:
                yield _entry_result(text, entry, label(index), allow_smtputf8)
                index += 1
    except _Problem as problem:
        yield _error(label(index), text[splitter.start :], problem)


def _entry_result(
    text: str, entry: _Entry, label: str, allow_smtputf8: bool
) -> Address | InvalidAddress:
    try:
        display_name, addr = _split_mailbox(entry)
        return _address_from(display_name, addr, allow_smtputf8)
    except _Problem as problem:
        return _error(label, text[entry.start : entry.end], problem)


def _error(label: str, shown: str, problem: _Problem) -> InvalidAddress:
    return InvalidAddress(f"{label}: {_show(shown)} {problem.reason}", field=label,
                          hint=problem.hint)


def _show(text: str) -> str:
    """The offending text, quoted, with line breaks visible, on one line."""
    text = text.strip()
    if len(text) > _SHOWN_MAX:
        text = text[: _SHOWN_MAX - 1] + "…"
    return repr(text)
