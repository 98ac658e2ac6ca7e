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
  filename, type (with its parameters but `name`: a calendar invite keeps its
  `method`, and goes out again as the body's last alternative, `core.mime`) and
  bytes: an attached message (message/rfc822) is one .eml file, and a part with a
  Content-ID stays an inline image of the HTML body when it is not an attachment, or
  when it is in a multipart/related and the HTML shows it (cid:).
- Signed or encrypted mail (a message whose own type is multipart/signed,
  multipart/encrypted or application/pkcs7-mime) is not rebuilt: its body goes out
  byte for byte under its own Content-Type (a sealed body, `AttachmentIn.sealed`), with
  the headers read as for any message, which no signature covers. The files inside
  signed mail are checked as attachments are, and not stored apart (`Submission.
  inspected`); encrypted mail is judged as the one file it is (smime.p7m,
  encrypted.asc). Its body must be 7bit lines, as signers write it. Signed or encrypted
  parts further down a message Outbox rebuilds are refused: rebuilt, the signature
  would no longer match.
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
from urllib.parse import unquote

from outbox.core.addresses import DOTS_AND_ATEXT
from outbox.core.attachments import AttachmentIn
from outbox.core.compose import Submission
from outbox.core.inbound_headers import Utf8Headers, check_utf8
from outbox.core.mime import RESERVED_HEADERS
from outbox.core.mime_types import OWN_PARAMS, format_content_type, is_seven_bit
from outbox.errors import InputError, InvalidAddress

DROPPED_HEADERS = RESERVED_HEADERS | frozenset({
    "bcc", "received", "return-path", "delivered-to", "x-original-to", "dkim-signature",
    "arc-seal", "arc-message-signature", "arc-authentication-results",
    "authentication-results", "content-disposition", "content-id", "content-description",
    "content-language", "content-location",
})
_SEALED = frozenset({"multipart/signed", "multipart/encrypted", "application/pkcs7-mime",
                     "application/x-pkcs7-mime"})
_SEALED_NAMES = {"multipart/signed": "signed-body", "multipart/encrypted": "encrypted.asc"}
_HEADERS_ONLY = BytesParser(policy=policy.SMTP)
_SEALED_TYPE_MAX = 900  # its line goes out as it came, under the 998-octet limit
_HEADER_END = re.compile(rb"\r\n\r\n")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 2045 token
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_CID_URL = re.compile(r"cid:([^\s\"'<>()]+)", re.IGNORECASE)
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
_PARSER = BytesParser(policy=Utf8Headers(linesep="\r\n", header_factory=_ParsedOnce()))


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
    check_utf8(_read_headers(message))
    if message.get_content_type() in _SEALED:
        return _sealed(raw, message, envelope)
    _refuse_signed(message)
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    bodies = [p for p in (text_part, html_part) if p is not None]
    html = _text_of(html_part) if html_part is not None else None
    text = _text_of(text_part) if text_part is not None else (None if html else "")
    attachments = [_attachment(part, index, html, related, spooled or {})
                   for index, (part, related) in enumerate(_attached_parts(message, bodies), 1)]
    return Submission(**_headed(message, envelope), text=text, html=html,
                      attachments=tuple(attachments))


def with_crlf(raw: bytes) -> bytes:
    """A message file saved with LF line ends (as editors and `curl` leave them) with
    the CRLF that SMTP carries; one that has CRLF anywhere is left as it is."""
    return raw if b"\r\n" in raw else raw.replace(b"\n", b"\r\n")


def _headed(message: EmailMessage, envelope: Envelope) -> dict[str, Any]:
    """What a submission takes from the headers and the envelope, whatever its body.
    With no envelope recipients (`POST /v1/messages/raw` without `rcpt_to`; SMTP always
    has some), the message goes to its To, Cc and Bcc headers' addresses, as `sendmail
    -t` sends it; the Bcc header is still not sent."""
    recipients = ({"envelope": tuple(envelope.rcpt_to)} if envelope.rcpt_to
                  else {"bcc": _addresses(message, "bcc")})
    return {"sender": _sender(message, envelope.mail_from),
            "to": _addresses(message, "to"), "cc": _addresses(message, "cc"),
            "reply_to": _addresses(message, "reply-to"),
            "subject": str(message.get("subject", "")), "headers": _kept_headers(message),
            **recipients, "metadata": {"smtp_mail_from": envelope.mail_from}}


def is_sealed(head: bytes) -> bool:
    """Whether a message, from the start of its bytes (its headers), is signed or
    encrypted mail, which goes out as it came."""
    return _HEADERS_ONLY.parsebytes(head, headersonly=True).get_content_type() in _SEALED


def _sealed(raw: bytes, message: EmailMessage, envelope: Envelope) -> Submission:
    """Signed or encrypted mail: its body as it came, under its own Content-Type."""
    kind = message.get_content_type()
    found = _HEADER_END.search(raw)
    body = raw[found.end():] if found else b""
    head = raw[:found.start()] if found else raw  # its end found where the parser found it
    if not body or not is_seven_bit(body) or b"\n" in head.replace(b"\r\n", b""):
        raise InputError(f"signed or encrypted mail ({kind}) is sent as it came, so its body "
                         "must be 7bit lines (ASCII, CRLF line ends, at most 998 octets a "
                         "line), as signing clients write it", field="body")
    encoding = str(message.get("content-transfer-encoding", "")).strip().lower()
    if encoding not in (("base64",) if kind.startswith("application/") else ("", "7bit")):
        raise InputError(f"signed or encrypted mail ({kind}) with Content-Transfer-Encoding "
                         f"{encoding!r} cannot be sent as it came", field="body")
    content_type = next(_FOLD.sub("", value).strip() for name, value in message.raw_items()
                        if name.lower() == "content-type")
    if not _PRINTABLE.fullmatch(content_type) or len(content_type) > _SEALED_TYPE_MAX:
        raise InputError(f"the Content-Type of signed or encrypted mail must be one line of "
                         f"printable ASCII, at most {_SEALED_TYPE_MAX} characters",
                         field="headers.Content-Type")
    if kind == "multipart/signed" and not message.is_multipart():
        raise InputError("multipart/signed mail without its parts", field="body")
    name = _SEALED_NAMES.get(kind) or _filename(message) or "smime.p7m"
    inspected = () if kind != "multipart/signed" else tuple(
        _attachment(part, index, None, False, {}) for index, (part, _) in
        enumerate(_leaves(cast(MIMEPart, message.get_payload(0)), False), 1)
        if _filename(part) or part.get_content_maintype() not in ("text", "multipart"))
    return Submission(**_headed(message, envelope), text=None, html=None, attachments=(
        AttachmentIn(name, base64.b64encode(body).decode("ascii"), content_type, sealed=True),),
        inspected=inspected)


def message_id_of(submission: Submission) -> str | None:
    """The Message-ID the client gave, if any."""
    return submission.headers.get("Message-ID")


def _read_headers(message: EmailMessage) -> Iterator[tuple[str, str]]:
    """The headers Outbox reads or keeps, as the parser left them (a Received header
    it drops may hold any bytes)."""
    for name, raw in message.raw_items():
        if name.lower() in _READ or name.lower() not in DROPPED_HEADERS:
            yield name, raw


_READ = frozenset({"from", "to", "cc", "reply-to", "subject", "message-id"})


def _sender(message: EmailMessage, mail_from: str) -> str:
    found = _addresses(message, "from")
    if not found and "from" not in message:
        if not mail_from:  # POST /v1/messages/raw, or MAIL FROM:<>: nothing to fall back on
            raise InvalidAddress("the message has no From header: give it the sender's "
                                 "address", field="from")
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


def _attached_parts(message: EmailMessage,
                    bodies: Sequence[MIMEPart]) -> Iterator[tuple[MIMEPart, bool]]:
    for part, related in _leaves(message, False):
        if not any(part is body for body in bodies):
            yield part, related


def _leaves(part: MIMEPart, related: bool) -> Iterator[tuple[MIMEPart, bool]]:
    """Every part that is not a multipart container, and whether it is inside a
    multipart/related; an attached message is one leaf."""
    if part.get_content_maintype() == "multipart":
        inner = related or part.get_content_subtype() == "related"
        for sub in part.iter_parts():
            yield from _leaves(cast(MIMEPart, sub), inner)
    else:
        yield part, related


def _attachment(part: MIMEPart, index: int, html: str | None, related: bool,
                spooled: Mapping[bytes, str]) -> AttachmentIn:
    content_type = part.get_content_type()
    content_id = _content_id(part, html, related) if html is not None else None
    filename = _filename(part) or _made_up_name(content_type, content_id, index)
    raw = _bytes_of(part)
    data = spooled.get(raw) or base64.b64encode(raw).decode("ascii")
    return AttachmentIn(filename, data, _content_type_of(part), None, content_id)


def _made_up_name(content_type: str, content_id: str | None, index: int) -> str:
    stem = "image" if content_id else "invite" if content_type == "text/calendar" else (
        "attachment")
    return f"{stem}-{index}{_EXTENSIONS.get(content_type, '.bin')}"


def _content_type_of(part: MIMEPart) -> str:
    """The part's type with the parameters that tell what it is (a calendar's `method`,
    a text's `charset`); `name` is written from the filename, and a parameter that
    is not plain ASCII is left out."""
    params = getattr(part.get("content-type"), "params", {})
    kept = tuple((str(key).lower(), str(value)) for key, value in params.items()
                 if _TOKEN.fullmatch(str(key)) and _PRINTABLE.fullmatch(str(value))
                 and str(key).lower() not in OWN_PARAMS)
    return format_content_type(part.get_content_type(), kept)


def _refuse_signed(message: EmailMessage) -> None:
    """Signed or encrypted mail is refused: Outbox rebuilds the MIME it sends, which
    would break the signature (it covers the signed part's exact bytes)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind in _SEALED:
            raise InputError(f"signed or encrypted mail ({kind}) cannot be relayed intact by "
                             "Outbox: its MIME would be rebuilt and the signature broken; send "
                             "it through your relay directly", field="body")


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


def _content_id(part: MIMEPart, html: str, related: bool) -> str | None:
    """An inline image's id: a Content-ID on a part that is not an attachment, or on
    one in a multipart/related that the HTML shows (`cid:`), whatever its
    Content-Disposition says (`EmailMessage.add_related(filename=...)` writes
    "attachment" there)."""
    value = str(part.get("content-id", "")).strip().removeprefix("<").removesuffix(">")
    if not value:
        return None
    if part.get_content_disposition() != "attachment":
        return value
    return value if related and _shows(html, value) else None


def _shows(html: str, content_id: str) -> bool:
    """Whether the HTML refers to `content_id` as a cid: URL (RFC 2392: %-encoded)."""
    return content_id.lower() in {unquote(url).lower() for url in _CID_URL.findall(html)}


def _bytes_of(part: MIMEPart) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner: Any = part.get_payload(0)
        return bytes(inner.as_bytes(policy=policy.SMTP))
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""
