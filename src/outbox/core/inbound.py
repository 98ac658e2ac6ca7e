"""A message that arrived by SMTP submission, read into the `Submission` the HTTP API
builds, so it meets the same rules. Pure: the stdlib email parser, no I/O.

- The envelope decides who receives it: RCPT TO becomes `Submission.envelope`; a
  recipient no To or Cc header names is a Bcc recipient. A Bcc header the client
  left in is dropped: it is never written.
- The From header (one mailbox) is the sender; without one, MAIL FROM.
- To, Cc, Reply-To and Subject as written (encoded words decoded); the Message-ID
  is kept and becomes the message's. Outbox writes Date and the MIME structure
  itself; trace and transport headers (Received, Return-Path, DKIM-Signature, ...)
  are dropped; every other header is kept, the first of each name.
- The body is the text/plain and text/html part the client meant as the body
  (`EmailMessage.get_body`); every other leaf part is an attachment with its
  filename, type and bytes: an attached message (message/rfc822) is one .eml file,
  and a part with a Content-ID that is not an attachment stays an inline image of
  the HTML body.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser
from typing import Any, cast

from outbox.core.addresses import DOTS_AND_ATEXT
from outbox.core.attachments import AttachmentIn
from outbox.core.compose import Submission
from outbox.core.mime import RESERVED_HEADERS
from outbox.errors import InvalidAddress

DROPPED_HEADERS = RESERVED_HEADERS | frozenset({
    "bcc", "received", "return-path", "delivered-to", "x-original-to", "dkim-signature",
    "arc-seal", "arc-message-signature", "arc-authentication-results",
    "authentication-results", "content-disposition", "content-id", "content-description",
    "content-language", "content-location",
})
_EXTENSIONS = {"text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics",
               "text/csv": ".csv", "image/png": ".png", "image/jpeg": ".jpg",
               "image/gif": ".gif", "application/pdf": ".pdf", "message/rfc822": ".eml"}


class _ParsedOnce(HeaderRegistry):
    """Short header values parsed once: `get_body`, `get_content_type` and their kin
    look a message's Content-Type up again and again (nine times for a plain-text
    message), and the registry parsed it anew each time; such values recur across
    messages too. Header objects are immutable strings, safe to share. Long values
    (a To of a thousand addresses) are parsed each time: kept, they would hold memory
    a client chose."""

    def __call__(self, name: str, value: str) -> BaseHeader:
        if len(value) > CACHED_VALUE_CHARS:
            return cast(BaseHeader, super().__call__(name, value))
        return self._cached(name, value)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one registry, kept for the process
    def _cached(self, name: str, value: str) -> BaseHeader:
        return cast(BaseHeader, super().__call__(name, value))


CACHED_VALUE_CHARS = 200
_PARSER = BytesParser(policy=policy.SMTP.clone(header_factory=_ParsedOnce()))


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str
    rcpt_to: Sequence[str]


def read_message(raw: bytes, envelope: Envelope,
                 spooled: Mapping[bytes, str] | None = None) -> Submission:
    """The submission of a message as DATA carried it (`InvalidAddress` for a From
    header that is not exactly one mailbox; the other rules are `plan_message`'s).
    `spooled`: stand-in bodies (decoded) and the tokens of the files stored in their
    place (`submission.spool`); such an attachment's content_base64 is its token."""
    message = cast(EmailMessage, _PARSER.parsebytes(raw))
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    bodies = [p for p in (text_part, html_part) if p is not None]
    html = _text_of(html_part) if html_part is not None else None
    text = _text_of(text_part) if text_part is not None else (None if html else "")
    attachments = [_attachment(part, index, html is not None, spooled or {})
                   for index, part in enumerate(_attached_parts(message, bodies), 1)]
    return Submission(
        sender=_sender(message, envelope.mail_from),
        to=_addresses(message, "to"), cc=_addresses(message, "cc"),
        reply_to=_addresses(message, "reply-to"),
        subject=str(message.get("subject", "")),
        text=text, html=html, headers=_kept_headers(message),
        attachments=tuple(attachments), envelope=tuple(envelope.rcpt_to),
        metadata={"smtp_mail_from": envelope.mail_from})


def message_id_of(submission: Submission) -> str | None:
    """The Message-ID the client gave, if any."""
    return submission.headers.get("Message-ID")


def _sender(message: EmailMessage, mail_from: str) -> str:
    found = _addresses(message, "from")
    if not found and "from" not in message:
        return mail_from
    if len(found) != 1:
        raise InvalidAddress(f"from: the From header must be exactly one address, found "
                             f"{len(found)}", field="from")
    return found[0]


def _addresses(message: EmailMessage, name: str) -> list[str]:
    """The mailboxes of every header `name` (groups give their members)."""
    found: list[str] = []
    for header in message.get_all(name, []):
        found += [str(address) for address in getattr(header, "addresses", ())]
    return found


def _kept_headers(message: EmailMessage) -> dict[str, str]:
    """Each header is parsed (encoded words decoded) only once it is known to be kept:
    `items()` parsed every one, Received, DKIM-Signature and the others dropped here
    too, a sixth of the listener's CPU per message under smtp-source."""
    kept: dict[str, str] = {}
    parse = message.policy.header_fetch_parse
    for name, raw in message.raw_items():
        lower = name.lower()
        if lower == "message-id":
            plain = raw.strip()
            kept["Message-ID"] = (plain if _PLAIN_MESSAGE_ID.fullmatch(plain)
                                  else str(parse(name, raw)).strip())
        elif lower not in DROPPED_HEADERS and name not in kept:
            kept[name] = str(parse(name, raw))
    return kept


# A Message-ID of `<local@domain>`, atext and dots, reads as it is written. Each message
# has its own, so `_ParsedOnce` never holds it: parsing it was 20 of read_message's 58 us
# for smtp-source's messages (issue 15).
_PLAIN_MESSAGE_ID = re.compile(f"<{DOTS_AND_ATEXT}@{DOTS_AND_ATEXT}>")


def _text_of(part: MIMEPart) -> str:
    try:
        text = str(part.get_content())
    except (LookupError, UnicodeError):  # an unknown or lying charset: keep what decodes
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return text.replace("\r\n", "\n")


def _attached_parts(message: EmailMessage, bodies: Sequence[MIMEPart]) -> Iterator[MIMEPart]:
    for part in _leaves(message):
        if not any(part is body for body in bodies):
            yield part


def _leaves(part: MIMEPart) -> Iterator[MIMEPart]:
    """Every part that is not a multipart container; an attached message is one leaf."""
    if part.get_content_maintype() == "multipart":
        for sub in part.iter_parts():
            yield from _leaves(cast(MIMEPart, sub))
    else:
        yield part


def _attachment(part: MIMEPart, index: int, has_html: bool,
                spooled: Mapping[bytes, str]) -> AttachmentIn:
    content_type = part.get_content_type()
    content_id = _content_id(part) if has_html else None
    stem = "image" if content_id else "attachment"
    filename = _filename(part) or f"{stem}-{index}{_EXTENSIONS.get(content_type, '.bin')}"
    raw = _bytes_of(part)
    data = spooled.get(raw) or base64.b64encode(raw).decode("ascii")
    return AttachmentIn(filename, data, content_type, None, content_id)


def _filename(part: MIMEPart) -> str | None:
    """The filename parameter; one the strict parser gives up on (an unquoted
    encoded-word) is read as a lenient client would, so it is judged all the same."""
    name = part.get_filename()
    if name is not None:
        return name
    legacy = Message()
    for header, value in part.raw_items():
        if header.lower() in ("content-disposition", "content-type"):
            legacy[header] = " ".join(str(value).split())
    found = legacy.get_filename()
    return found if isinstance(found, str) else None


def _content_id(part: MIMEPart) -> str | None:
    """An inline image's id: a Content-ID on a part that is not an attachment."""
    value = str(part.get("content-id", "")).strip()
    if not value or part.get_content_disposition() == "attachment":
        return None
    return value.removeprefix("<").removesuffix(">") or None


def _bytes_of(part: MIMEPart) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner: Any = part.get_payload(0)
        return bytes(inner.as_bytes(policy=policy.SMTP))
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""
