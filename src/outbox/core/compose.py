"""Check a submission and plan the message to store: pure, no I/O.

Every entry point (API, CLI, UI, SMTP submission) builds a `Submission`;
`plan_message` either raises a typed `InputError` naming the field, or
returns the content to store, the envelope, and the encoded size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from outbox.core import addresses
from outbox.core.attachments import (
    AttachmentIn,
    FileInfo,
    TypePolicy,
    check_attachment,
    check_type,
    decode_base64,
    file_info,
    is_attached_message,
    is_windows_executable,
)
from outbox.core.content import AttachmentRef, MessageContent, PlannedBlob, date_header
from outbox.core.filenames import decode_filename
from outbox.core.limits import RecipientField, check_headers, check_recipient_count
from outbox.core.links import LinkPolicy
from outbox.core.mime import RESERVED_HEADERS, plan_mime
from outbox.core.mime_types import as_sent, bare_type, is_seven_bit
from outbox.core.routing import RoutingTable
from outbox.errors import (
    HeaderInjection,
    InputError,
    MessageTooLarge,
)

__all__ = ["AttachmentIn", "FileInfo", "Limits", "PlannedBlob", "PlannedMessage",
           "Submission", "plan_message"]

_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ':' (RFC 5322 ftext)
# CR, LF, NUL, and every other character str.splitlines() breaks at: the email package
# refuses all of them in a header, so they must be refused here, naming the field.
_LINE_BREAK = re.compile("[\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_MESSAGE_ID = re.compile(r"<[!-;=?A-~]+@[!-;=?A-~]+>")  # printable ASCII but <, >, @, space
# Reserved headers a submission sets with a field of its own; Outbox writes the others.
_OWN_FIELD = {"from": "from", "to": "to", "cc": "cc", "bcc": "bcc", "subject": "subject",
              "reply-to": "reply_to"}
_HEADER_NAME_MAX = 76  # "Name:" and a value still fit a 78-column line
_SNIFF_BYTES = 4096


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
    # The envelope recipients when they are given apart from the headers (SMTP
    # submission's RCPT TO): the message goes to exactly these, `bcc` is unused, and a
    # To or Cc address outside it stays in its header without receiving the message.
    envelope: Sequence[str] | None = None
    # What the submitter called those, in messages about them: `rcpt_to` over
    # POST /v1/messages/raw, `to` with `outbox send --eml` (its --to).
    envelope_field: str = "envelope"
    # RFC 8058 one-click unsubscribe headers (service.unsubscribe); one recipient only.
    list_unsubscribe: bool = False
    # The files inside signed mail (its body is a sealed attachment, core.inbound): checked
    # as attachments are, never stored apart.
    inspected: Sequence[AttachmentIn] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_size: int = 25_000_000
    max_attachment_size: int = 20_000_000
    blocked_extensions: frozenset[str] = frozenset()
    allowed_extensions: frozenset[str] = frozenset()
    extension_policy: str = "block"  # "block" | "allow" (only allowed_extensions)
    max_recipients: int = 1000
    max_headers: int = 100
    max_header_size: int = 8_000

    @property
    def types(self) -> TypePolicy:
        return TypePolicy(self.extension_policy, self.blocked_extensions,
                          self.allowed_extensions)


@dataclass(frozen=True, slots=True)
class PlannedRecipient:
    address: str  # envelope form
    kind: str
    relay: str


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    sender: str  # envelope form
    message_id: str
    content: MessageContent
    recipients: tuple[PlannedRecipient, ...]
    size: int
    blobs: tuple[PlannedBlob, ...] = ()


def plan_message(sub: Submission, *, limits: Limits, routing: RoutingTable,
                 known_relays: Sequence[str], now: datetime,
                 make_message_id: Callable[[str], str],
                 files: Sequence[FileInfo] | None = None,
                 links: LinkPolicy | None = None) -> PlannedMessage:
    """Validate everything a user typed; raise on the first problem.

    `files`: what the edge learned of each attachment's bytes (uploads, sniffed
    types); without it `content_base64` is decoded here. `links`: send files
    over its threshold as signed download links instead of attaching them."""
    sender = addresses.parse_mailbox(sub.sender, "from")
    check_recipient_count(recipient_fields(sub), limits.max_recipients)
    plan = (addresses.plan_recipients(sub.to, sub.cc, sub.bcc) if sub.envelope is None
            else addresses.plan_envelope(sub.to, sub.cc, sub.envelope,
                                         field=sub.envelope_field))
    reply_to = addresses.parse_addresses(sub.reply_to, "reply_to") if sub.reply_to else []
    _check_text_fields(sub)
    check_headers(sub.headers, limits.max_headers, limits.max_header_size)
    headers = _checked_headers(sub.headers)
    message_id = headers.pop("Message-ID", None) or make_message_id(sender.ascii_domain)
    sub = replace(sub, attachments=tuple(_decoded_name(a) for a in sub.attachments))
    infos = _checked_attachments(sub, limits, files)
    recipients = _route(plan.envelope, sub.relay, routing, known_relays)
    content = MessageContent(
        from_=sender.formatted(),
        to=tuple(a.formatted() for a in plan.to),
        cc=tuple(a.formatted() for a in plan.cc),
        reply_to=tuple(a.formatted() for a in reply_to),
        subject=sub.subject,
        text=sub.text,
        html=sub.html,
        headers=tuple(headers.items()),
        date=date_header(now),
        attachments=tuple(_attachment_ref(a, info, links, now)
                          for a, info in zip(sub.attachments, infos, strict=True)),
    )
    size = plan_mime(content, message_id).size
    if size > limits.max_message_size:
        raise MessageTooLarge(f"the message is {size:,} bytes encoded, over the limit of "
                              f"{limits.max_message_size:,} (limits.max_message_size)")
    return PlannedMessage(sender.addr_spec, message_id, content, recipients, size,
                          content.blob_uses())


def recipient_fields(sub: Submission) -> list[tuple[str, RecipientField]]:
    """The fields whose addresses receive the message, for `check_recipient_count`."""
    if sub.envelope is not None:
        return [(sub.envelope_field, sub.envelope)]
    return [("to", sub.to), ("cc", sub.cc), ("bcc", sub.bcc)]


def attachment_fields(attachment: AttachmentIn) -> dict[str, str]:
    """The attachment as the user gave it (for request hashes)."""
    fields = {"filename": attachment.filename, "content_type": attachment.content_type,
              "content_base64": attachment.content_base64}
    if attachment.upload_id is not None:
        fields["upload_id"] = attachment.upload_id
    if attachment.content_id is not None:
        fields["content_id"] = attachment.content_id
    return fields


def _check_text_fields(sub: Submission) -> None:
    if _LINE_BREAK.search(sub.subject):
        raise HeaderInjection("the subject contains a line break (CR or LF)", field="subject")
    if sub.text is None and sub.html is None and not any(a.sealed for a in sub.attachments):
        raise InputError("give a body: text, html or both", field="text")


def _checked_headers(headers: dict[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in headers.items():
        where = f"headers.{name}"
        if found := (_LINE_BREAK.search(name) or _LINE_BREAK.search(value)):
            raise HeaderInjection(f"header {_shown(name)} contains {_shown(found.group())}, a "
                                  "line break or NUL, which no header may hold", field=where)
        if not _HEADER_NAME.match(name) or len(name) > _HEADER_NAME_MAX:
            raise InputError(f"{_shown(name)} is not a valid header name (printable ASCII "
                             f"without ':', at most {_HEADER_NAME_MAX} characters)",
                             field=where)
        if name.lower() == "message-id":
            checked["Message-ID"] = _checked_message_id(value, where)
        elif name.lower() in _OWN_FIELD:
            raise InputError(f"set '{name}' with the field '{_OWN_FIELD[name.lower()]}', not in "
                             "headers", field=where)
        elif name.lower() in RESERVED_HEADERS:
            raise InputError(f"Outbox writes '{name}' itself: leave it out of headers",
                             field=where)
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


def _checked_attachments(sub: Submission, limits: Limits,
                         files: Sequence[FileInfo] | None) -> list[FileInfo]:
    if files is None:
        files = [_inline_info(a, f"attachments[{i}]") for i, a in enumerate(sub.attachments)]
    content_ids: set[str] = set()
    for index, (attachment, info) in enumerate(zip(sub.attachments, files, strict=True)):
        where = f"attachments[{index}]"
        if attachment.sealed:
            _check_sealed(attachment, info, limits, where)
            continue
        check_attachment(attachment, info, limits.types, limits.max_attachment_size, where)
        _check_inline(attachment, sub.html is not None, content_ids, where)
    for index, found in enumerate(sub.inspected):
        where, attachment = f"attachments[{index}]", _decoded_name(found)
        check_attachment(attachment, _inline_info(attachment, where), limits.types,
                         limits.max_attachment_size, where)
    return list(files)


def _check_sealed(attachment: AttachmentIn, info: FileInfo, limits: Limits, where: str) -> None:
    """Encrypted mail is judged as the one file it is (its name and what it looks like);
    signed mail's files are `inspected` one by one, and the message's size is checked
    as any message's."""
    if bare_type(attachment.content_type) != "multipart/signed":
        check_type(attachment.filename, info.sniffed, limits.types, f"{where}.filename")


def _decoded_name(attachment: AttachmentIn) -> AttachmentIn:
    """The attachment under the name its recipients will see, which is the name checked
    and delivered (`core.filenames`)."""
    return replace(attachment, filename=decode_filename(attachment.filename))


def _inline_info(attachment: AttachmentIn, where: str) -> FileInfo:
    if attachment.upload_id is not None:
        raise InputError(f"no upload with id {_shown(attachment.upload_id)}",
                         field=f"{where}.upload_id")
    data = decode_base64(attachment, where)
    head = data[:_SNIFF_BYTES]
    info = file_info(data, (".exe",) if is_windows_executable(head) else ())
    return replace(info, seven_bit=is_attached_message(attachment) and is_seven_bit(data))


def _check_inline(attachment: AttachmentIn, has_html: bool, seen: set[str], where: str) -> None:
    content_id = attachment.content_id
    if content_id is None:
        return
    if not has_html:
        raise InputError("an inline image (content_id) needs an html body that shows it "
                         f"with <img src=\"cid:{content_id}\">", field=f"{where}.content_id")
    if content_id in seen:
        raise InputError(f"content_id {_shown(content_id)} is used twice",
                         field=f"{where}.content_id")
    seen.add(content_id)


def _attachment_ref(attachment: AttachmentIn, info: FileInfo, links: LinkPolicy | None,
                    now: datetime) -> AttachmentRef:
    """What is stored for a file: its name, type and blob; inline images keep their
    Content-ID; a file over the link threshold becomes a signed download link."""
    if attachment.sealed:  # as it came: never a link, its type the message's own
        return AttachmentRef(attachment.filename, attachment.content_type, info.sha256,
                             info.size, sealed=True)
    attachment = replace(attachment, content_type=as_sent(attachment.content_type,
                                                          info.seven_bit))
    if attachment.content_id is not None:
        return AttachmentRef(attachment.filename, attachment.content_type, info.sha256,
                             info.size, content_id=attachment.content_id)
    link = None
    if links is not None and links.applies(info.size):
        link = links.link_for(info.sha256, info.size, attachment.filename,
                              attachment.content_type or "application/octet-stream", now)
    return AttachmentRef(attachment.filename, attachment.content_type, info.sha256, info.size,
                         link=link)


def _route(envelope: Sequence[addresses.EnvelopeRecipient], requested: str | None,
           routing: RoutingTable, known_relays: Sequence[str]) -> tuple[PlannedRecipient, ...]:
    if requested is not None and requested not in known_relays:
        raise InputError(f"no relay is named '{requested}' (known: "
                         f"{', '.join(known_relays) or 'none'})", field="relay")
    planned = []
    by_domain: dict[str, str | None] = {}  # a long list has few domains; routes are globs
    for recipient in envelope:
        address = recipient.address
        domain = address.ascii_domain
        if domain in by_domain:
            relay = by_domain[domain]
        else:
            relay = by_domain[domain] = routing.relay_for(domain, requested)
        if relay is None:
            raise InputError("no relay is configured to carry this message; add a [[relays]] "
                             "section to the config", field="relay")
        planned.append(PlannedRecipient(address.addr_spec, recipient.kind.value, relay))
    return tuple(planned)
