"""Check a submission and plan the message to store: pure, no I/O.

Every entry point (API, CLI, UI, SMTP submission) builds a `Submission`;
`plan_message` either raises a typed `InputError` naming the field, or
returns the content to store, the envelope, and the encoded size.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from outbox.core import addresses
from outbox.core.mime import RESERVED_HEADERS, build_message
from outbox.core.routing import RoutingTable
from outbox.errors import (
    AttachmentBlocked,
    HeaderInjection,
    InputError,
    MessageTooLarge,
)

_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ':' (RFC 5322 ftext)
# CR, LF, NUL, and every other character str.splitlines() breaks at: the email package
# refuses all of them in a header, so they must be refused here, naming the field.
_LINE_BREAK = re.compile("[\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_MESSAGE_ID = re.compile(r"<[!-;=?A-~]+@[!-;=?A-~]+>")  # printable ASCII but <, >, @, space
_MIME_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"  # RFC 6838 restricted-name
_CONTENT_TYPE = re.compile(f"{_MIME_NAME}/{_MIME_NAME}")


@dataclass(frozen=True, slots=True)
class AttachmentIn:
    filename: str
    content_base64: str
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Submission:
    sender: str
    to: Sequence[str] | str = ()
    cc: Sequence[str] | str = ()
    bcc: Sequence[str] | str = ()
    reply_to: Sequence[str] | str = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    attachments: Sequence[AttachmentIn] = ()
    relay: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_size: int = 25_000_000
    max_attachment_size: int = 20_000_000
    blocked_extensions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PlannedRecipient:
    address: str  # envelope form
    kind: str
    relay: str


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    sender: str  # envelope form
    message_id: str
    content: dict[str, Any]
    recipients: tuple[PlannedRecipient, ...]
    size: int


def plan_message(sub: Submission, *, limits: Limits, routing: RoutingTable,
                 known_relays: Sequence[str], now: datetime,
                 make_message_id: Callable[[str], str]) -> PlannedMessage:
    """Validate everything a user typed; raise on the first problem."""
    sender = addresses.parse_mailbox(sub.sender, "from")
    plan = addresses.plan_recipients(sub.to, sub.cc, sub.bcc)
    reply_to = addresses.parse_addresses(sub.reply_to, "reply_to") if sub.reply_to else []
    _check_text_fields(sub)
    headers = _checked_headers(sub.headers)
    message_id = headers.pop("Message-ID", None) or make_message_id(sender.ascii_domain)
    _check_attachments(sub.attachments, limits)
    recipients = _route(plan.envelope, sub.relay, routing, known_relays)
    content = {
        "from": sender.formatted(),
        "to": [a.formatted() for a in plan.to],
        "cc": [a.formatted() for a in plan.cc],
        "reply_to": [a.formatted() for a in reply_to],
        "subject": sub.subject,
        "text": sub.text,
        "html": sub.html,
        "headers": headers,
        "date": format_datetime(now),
        "attachments": [attachment_fields(a) for a in sub.attachments],
    }
    size = len(build_message(content, message_id))
    if size > limits.max_message_size:
        raise MessageTooLarge(f"the message is {size:,} bytes encoded, over the limit of "
                              f"{limits.max_message_size:,} (limits.max_message_size)")
    return PlannedMessage(sender.addr_spec, message_id, content, recipients, size)


def attachment_fields(attachment: AttachmentIn) -> dict[str, str]:
    return {"filename": attachment.filename, "content_type": attachment.content_type,
            "content_base64": attachment.content_base64}


def _check_text_fields(sub: Submission) -> None:
    if _LINE_BREAK.search(sub.subject):
        raise HeaderInjection("the subject contains a line break (CR or LF)", field="subject")
    if sub.text is None and sub.html is None:
        raise InputError("give a body: text, html or both", field="text")


def _checked_headers(headers: dict[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in headers.items():
        where = f"headers.{name}"
        if _LINE_BREAK.search(name) or _LINE_BREAK.search(value):
            raise HeaderInjection(f"header {_shown(name)} contains a line break (CR or LF)",
                                  field=where)
        if not _HEADER_NAME.match(name):
            raise InputError(f"{_shown(name)} is not a valid header name", field=where)
        if name.lower() == "message-id":
            checked["Message-ID"] = _checked_message_id(value, where)
        elif name.lower() in RESERVED_HEADERS:
            raise InputError(f"set '{name}' with its own field, not in headers", field=where)
        else:
            checked[name] = value
    return checked


def _shown(text: str) -> str:
    """Quote user text for a one-line message: control characters escaped."""
    return repr(text[:100])


def _checked_message_id(value: str, where: str) -> str:
    value = value.strip()
    if not _MESSAGE_ID.fullmatch(value):
        raise InputError("Message-ID must look like <unique@domain>", field=where)
    return value


def _check_attachments(attachments: Sequence[AttachmentIn], limits: Limits) -> None:
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        name = attachment.filename
        if not name or _LINE_BREAK.search(name) or "/" in name or "\\" in name:
            raise InputError("the filename is empty or has a line break or a path",
                             field=f"{where}.filename")
        _check_extension(name, limits, f"{where}.filename")
        _check_content_type(attachment.content_type, f"{where}.content_type")
        try:
            # Line-wrapped base64 (as `base64` prints it) is fine; other junk is not.
            data = base64.b64decode("".join(attachment.content_base64.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InputError("content_base64 is not valid base64",
                             field=f"{where}.content_base64") from None
        if len(data) > limits.max_attachment_size:
            raise MessageTooLarge(f"'{name}' is {len(data):,} bytes, over the limit of "
                                  f"{limits.max_attachment_size:,} (limits.max_attachment_size)",
                                  field=where)


def _check_content_type(content_type: str, where: str) -> None:
    """A bare `type/subtype` (no parameters, no line breaks); a file is never multipart."""
    if not content_type:
        return
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise InputError(f"content_type {_shown(content_type)} must be type/subtype, like "
                         "application/pdf", field=where)
    if content_type.lower().startswith("multipart/"):
        raise InputError("content_type multipart/* is not a file type", field=where)


def _check_extension(name: str, limits: Limits, where: str) -> None:
    """The last extension decides, as Windows does: 'invoice.pdf.exe' is an .exe, and
    trailing dots or spaces ('invoice.exe. ') do not hide it."""
    stem = name.rstrip(". ").lower()
    _, dot, extension = stem.rpartition(".")
    blocked = {"." + e.lower().lstrip(".") for e in limits.blocked_extensions}
    if dot and f".{extension}" in blocked:
        raise AttachmentBlocked(f"'{name}' is blocked: files ending in .{extension} are not "
                                f"allowed (limits.blocked_extensions)", field=where)


def _route(envelope: Sequence[addresses.Recipient], requested: str | None,
           routing: RoutingTable, known_relays: Sequence[str]) -> tuple[PlannedRecipient, ...]:
    if requested is not None and requested not in known_relays:
        raise InputError(f"no relay is named '{requested}' (known: "
                         f"{', '.join(known_relays) or 'none'})", field="relay")
    planned = []
    for recipient in envelope:
        address = recipient.address
        relay = routing.relay_for(address.ascii_domain, requested)
        if relay is None:
            raise InputError("no relay is configured to carry this message; add a [[relays]] "
                             "section to the config", field="relay")
        planned.append(PlannedRecipient(address.addr_spec, recipient.kind.value, relay))
    return tuple(planned)
