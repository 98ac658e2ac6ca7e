"""The checks on one mailbox, and `Problem`: why a piece of text is not an address.

- `check_display_name(name)` refuses line breaks, NUL and other control characters;
- `checked_ascii_domain(local, domain)` validates ``local@domain`` with email-validator in
  syntax mode (never DNS), accepts the special-use domains, enforces the 254-octet limit,
  and returns the domain's lowercase IDNA (punycode) form;
- `injection(text)` is the `Problem` for a line break or NUL, refused as header injection.

A `Problem` carries a reason and a hint but no field: whoever knows the field turns it into
`InvalidAddress`, showing the offending text with `show`. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any, Final

__all__ = [
    "LINE_BREAKS",
    "SPECIAL_USE_DOMAINS",
    "SYNTAX_HINT",
    "Problem",
    "check_display_name",
    "checked_ascii_domain",
    "has_forbidden",
    "injection",
    "show",
]

#: Every character `str.splitlines` breaks on; none of them may reach a header.
LINE_BREAKS: Final = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")
#: Accepted although email-validator would refuse some (RFC 2606, RFC 6761): the name and
#: its subdomains.
SPECIAL_USE_DOMAINS: Final = ("test", "example", "invalid", "localhost")

SYNTAX_HINT: Final = 'write addresses as a@example.com or "Name, Display" <a@example.com>'

_FORBIDDEN: Final = LINE_BREAKS | {"\x00"}
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")  # Cc but tab, Cs
_SHOWN_MAX: Final = 80
_MAX_ADDRESS_OCTETS: Final = 254  # RFC 3696 errata / RFC 5321 path limit, without <>

_INJECTION_HINT: Final = "put each address on one line and separate addresses with commas"


class Problem(Exception):
    """Why an entry is not an address; becomes `InvalidAddress` once its field is known."""

    def __init__(self, reason: str, *, hint: str | None = SYNTAX_HINT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def has_forbidden(text: str) -> bool:
    return not _FORBIDDEN.isdisjoint(text)


def injection(text: str) -> Problem:
    what = "a NUL character" if "\x00" in text else "a line break inside an address"
    return Problem(f"has {what} (refused: it could inject a header)", hint=_INJECTION_HINT)


def check_display_name(name: str) -> None:
    if has_forbidden(name):
        raise injection(name)
    if _CONTROL_RE.search(name):
        raise Problem("has a control character in its display name")


@cache
def _email_validator() -> tuple[Callable[..., Any], type[Exception], Callable[..., Any] | None]:
    """email-validator's validate_email, its error, and the local-part check validate_email
    runs (not exported; the unit tests pin it; None with another email-validator: the
    whole check only). It loads with the first address checked (its regular expressions
    cost some 25 ms), not with every command that imports this module."""
    from email_validator import EmailNotValidError, validate_email

    try:
        from email_validator.syntax import validate_email_local_part
    except ImportError:  # pragma: no cover - another email-validator
        return validate_email, EmailNotValidError, None
    return validate_email, EmailNotValidError, validate_email_local_part


@lru_cache(maxsize=4096)
def checked_ascii_domain(local: str, domain: str) -> str:
    """Validate ``local@domain`` (syntax only) and return the domain's ASCII form."""
    if has_forbidden(local) or has_forbidden(domain):
        raise injection(local + domain)
    _, EmailNotValidError, check_local = _email_validator()
    # validate_email costs ~20 µs an address, mostly its parsing and the domain's IDNA
    # check, and a message's thousand recipients share a few domains: a plain ASCII
    # local part is checked on its own, the domain once. Anything but a clear pass goes
    # through the whole check, so every refusal reads as it always has.
    if _ATEXT.fullmatch(local) and check_local is not None:
        try:
            check_local(local, allow_smtputf8=True, allow_empty_local=False,
                        quoted_local_part=False)
            ascii_domain = _checked_domain(domain)
        except (EmailNotValidError, Problem):
            return _checked_whole(local, domain)
        if len(local) + 1 + len(ascii_domain) <= _QUICK_MAX:
            return ascii_domain
    return _checked_whole(local, domain)


# RFC 5322 atext: the characters of an atom, which reads as written (with dots, a
# dot-atom). One set for every reader here, in core.inbound and in the SMTP listener.
ATEXT: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~"
DOTS_AND_ATEXT: Final = f"[{re.escape(ATEXT)}.]+"  # as a regular expression's text
_ATEXT: Final = re.compile(DOTS_AND_ATEXT)
_QUICK_MAX: Final = 200  # longer addresses take the whole check, which names the length


@lru_cache(maxsize=1024)
def _checked_domain(domain: str) -> str:
    return _checked_whole("a", domain)


def _checked_whole(local: str, domain: str) -> str:
    validate_email, EmailNotValidError, _ = _email_validator()
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
        raise Problem(f"is not a valid address: {_as_clause(str(exc))}") from None
    ascii_domain = checked.ascii_domain
    if special:
        ascii_domain = ascii_domain[: -len("test")] + special
    if len(local.encode()) + 1 + len(ascii_domain) > _MAX_ADDRESS_OCTETS:
        raise Problem(f"is longer than {_MAX_ADDRESS_OCTETS} characters")
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


def show(text: str) -> str:
    """The offending text, quoted, with line breaks visible, on one line."""
    text = text.strip()
    if len(text) > _SHOWN_MAX:
        text = text[: _SHOWN_MAX - 1] + "…"
    return repr(text)
