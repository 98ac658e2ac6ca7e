"""Header bytes of a message that arrived by SMTP, read as UTF-8 (RFC 6532). Pure.

The stdlib reads a message's bytes as ASCII and keeps every other byte as a lone
surrogate, so `From: Jürgen <a@x>` in raw UTF-8 came out as 'J\\udcc3\\udcbcrgen' and
was refused as a control character. Clients send raw UTF-8 headers under SMTPUTF8
and, in practice, under 8BITMIME too, so header bytes are decoded as UTF-8 wherever
they are valid UTF-8, whatever the MAIL command said. Only the values read are
decoded: the source is kept, so an attached message (message/rfc822) is still
written back byte for byte. Bytes that are not UTF-8 are refused, naming the header
(`check_utf8`), rather than read as replacement characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.headerregistry import BaseHeader
from email.policy import EmailPolicy
from typing import Any

from outbox.errors import InputError

# Headers whose refusal names their field as the API does (from, to, ...).
_FIELDS = frozenset({"from", "to", "cc", "reply-to", "subject"})
_LONE_BYTE = re.compile("[\udc80-\udcff]")  # how surrogateescape keeps a byte


class Utf8Headers(EmailPolicy):
    """The SMTP policy, with header values decoded as UTF-8 when they are read."""

    def header_fetch_parse(self, name: str, value: Any) -> BaseHeader:
        if isinstance(value, str):
            value = utf8_text(value)
        return super().header_fetch_parse(name, value)


def utf8_text(value: str) -> str:
    """`value` as the parser left it (ASCII, other bytes as surrogates) with its UTF-8
    sequences decoded; a byte that is no part of one stays a surrogate."""
    if value.isascii():
        return value
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:  # already text (a header set, not parsed)
        return value
    return raw.decode("utf-8", "surrogateescape")


def check_utf8(headers: Iterable[tuple[str, str]]) -> None:
    """`InputError` naming the first header (as the parser left it) that is not UTF-8."""
    for name, value in headers:
        if not value.isascii() and _LONE_BYTE.search(utf8_text(value)):
            lower = name.lower()
            raise InputError(
                f"header {name} is not valid UTF-8: write non-ASCII header text in UTF-8 "
                "(RFC 6532) or as encoded words (RFC 2047)",
                field=lower if lower in _FIELDS else f"headers.{name}")
