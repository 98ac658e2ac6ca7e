"""Send as link: signed, expiring download links for large files. Pure.

A token carries what the download needs (the blob's sha256 and size, the
filename, the content type, the expiry) and an HMAC-SHA256 over it, so
Outbox serves `GET /d/{token}` without a database row and without an API
key, and nobody can forge or alter one:

    token = base64url(json payload) "." base64url(hmac[:20])

`read_link` raises `LinkInvalid` for anything Outbox did not sign (a changed
byte anywhere) and `LinkExpired` for a genuine token past its expiry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from outbox.core.content import AttachmentRef, LinkRef
from outbox.errors import LinkExpired, LinkInvalid

_CONTEXT = b"outbox-link-v1\0"
_MAC_BYTES = 20


@dataclass(frozen=True, slots=True)
class LinkTicket:
    sha256: str
    size: int
    filename: str
    content_type: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """`threshold`: files larger than this (decoded bytes) go as a link; 0 is off."""

    threshold: int
    ttl: timedelta
    base_url: str
    key: bytes

    def applies(self, size: int) -> bool:
        return self.threshold > 0 and size > self.threshold

    def link_for(self, sha256: str, size: int, filename: str, content_type: str,
                 now: datetime) -> LinkRef:
        expires = (now + self.ttl).astimezone(UTC).replace(microsecond=0)
        token = sign_link(self.key, LinkTicket(sha256, size, filename, content_type, expires))
        return LinkRef(f"{self.base_url.rstrip('/')}/d/{token}", expires)


def sign_link(key: bytes, ticket: LinkTicket) -> str:
    payload = json.dumps([ticket.sha256, ticket.size, ticket.filename, ticket.content_type,
                          int(ticket.expires_at.timestamp())],
                         separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body = _b64(payload)
    return f"{body}.{_b64(_mac(key, body))}"


def read_link(key: bytes, token: str, now: datetime) -> LinkTicket:
    """The ticket of a token Outbox signed and that has not expired."""
    body, dot, mac = token.partition(".")
    expected = _b64(_mac(key, body))  # compared as text: every other spelling is refused
    if not dot or not hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode()):
        raise LinkInvalid()
    ticket = _ticket(_unb64(body))
    if ticket.expires_at <= now:
        raise LinkExpired(f"this download link expired at {ticket.expires_at:%Y-%m-%d %H:%M} "
                          "UTC")
    return ticket


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, _CONTEXT + body.encode("ascii", "replace"),
                    hashlib.sha256).digest()[:_MAC_BYTES]


def _ticket(payload: bytes) -> LinkTicket:
    try:
        sha256, size, filename, content_type, expires = json.loads(payload)
        return LinkTicket(str(sha256), int(size), str(filename), str(content_type),
                          datetime.fromtimestamp(int(expires), UTC))
    except (ValueError, TypeError) as exc:  # signed by us, so only a changed key gets here
        raise LinkInvalid() from exc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""


# --- the note that replaces the files in the body ------------------------------------------

Linked = Sequence[tuple[AttachmentRef, LinkRef]]


def link_note_text(linked: Linked) -> str:
    lines = [f"These files were too large to attach; download them before "
             f"{_when(linked)}:"]
    lines += [f"- {a.filename} ({human_size(a.size)}): {link.url}" for a, link in linked]
    return "\n".join(lines) + "\n"


def link_note_html(linked: Linked) -> str:
    items = "".join(f'<li><a href="{html.escape(link.url)}">'
                    f"{html.escape(a.filename)}</a> "
                    f"({human_size(a.size)})</li>" for a, link in linked)
    return (f"<hr><p>These files were too large to attach; download them before "
            f"{_when(linked)}:</p><ul>{items}</ul>")


def _when(linked: Linked) -> str:
    first = min(link.expires_at for _, link in linked)
    return f"{first.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def human_size(size: int) -> str:
    """Decimal units, as the config's sizes: 1,500,000 bytes is 1.5 MB."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
