"""Standard reports: RFC 3464 delivery status notifications and RFC 5965 feedback
reports (ARF), both `multipart/report`. Pure.

A DSN's `message/delivery-status` part is a block of per-message fields, then one
block per recipient (Final-Recipient, Action, Status, Diagnostic-Code). Only the
recipients whose Action is `failed` or `delayed` are bounces: `delivered`, `relayed`
and `expanded` are success notices and are left out. Some MTAs send the
delivery-status part as `text/plain` or nest the blocks: both are read as text.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message

from outbox.core.bounces.values import (
    BouncedRecipient,
    BounceKind,
    kind_of_status,
    status_in,
)

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_BOUNCE_ACTIONS = {"failed": BounceKind.HARD, "delayed": BounceKind.SOFT}
_DIAGNOSTIC_LIMIT = 500


def report_type(message: Message) -> str:
    if message.get_content_type() != "multipart/report":
        return ""
    return str(message.get_param("report-type", "") or "").strip().lower()


def part_of_type(message: Message, *types: str) -> Message | None:
    """The first part (depth first) of one of these content types."""
    for part in message.walk():
        if part.get_content_type() in types:
            return part
    return None


def text_of(part: Message) -> str:
    """A part's payload as text, whatever its transfer encoding or charset; the
    headers and body of an attached message."""
    payload: object = part.get_payload() if part.is_multipart() else part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:  # an unknown charset name
            return payload.decode("utf-8", "replace")
    if isinstance(payload, list):  # message/* parsed into a Message
        text = "\n".join(_as_text(inner) for inner in payload if isinstance(inner, Message))
        return _decoded(text, str(part.get("content-transfer-encoding", "")))
    return str(payload or "")


def _decoded(text: str, encoding: str) -> str:
    """A message/delivery-status part sent base64 or quoted-printable (the parser
    splits it into blocks before decoding, so the blocks are the encoded text)."""
    encoding = encoding.strip().lower()
    if encoding not in {"base64", "quoted-printable"}:
        return text
    data = text.strip().encode("ascii", "replace")
    try:
        raw = base64.b64decode(data) if encoding == "base64" else quopri.decodestring(data)
    except (binascii.Error, ValueError):
        return text
    return raw.decode("utf-8", "replace")


def header_text(message: Message, name: str) -> str:
    """A header's value with encoded words decoded, on one line ("" when absent)."""
    value = message.get(name)
    if value is None:
        return ""
    try:
        text = str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, HeaderParseError, UnicodeError):
        text = str(value)
    return " ".join(text.split())


def _as_text(message: Message) -> str:
    headers = "\n".join(f"{name}: {value}" for name, value in message.items())
    body = message.get_payload()
    return headers + "\n\n" + (body if isinstance(body, str) else "")


def field_blocks(text: str) -> list[dict[str, str]]:
    """RFC 822-style field blocks separated by blank lines; folded lines joined;
    names lower-cased; the first value of a name kept."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last] += " " + line.strip()
        elif (match := _FIELD.match(line)) is not None:
            last = match.group(1).lower()
            current.setdefault(last, match.group(2).strip())
    if current:
        blocks.append(current)
    return blocks


def dsn_recipients(status_text: str) -> tuple[BouncedRecipient, ...]:
    """The failed and delayed recipients of a delivery-status part."""
    found: list[BouncedRecipient] = []
    for block in field_blocks(status_text):
        recipient = _dsn_recipient(block)
        if recipient is not None and recipient.address not in {r.address for r in found}:
            found.append(recipient)
    return tuple(found)


def _dsn_recipient(block: dict[str, str]) -> BouncedRecipient | None:
    address = _typed_address(block.get("final-recipient") or block.get("original-recipient"))
    action = block.get("action", "").strip().lower().split(" ")[0]
    if not address or action not in _BOUNCE_ACTIONS:
        return None
    diagnostic = _typed_value(block.get("diagnostic-code", ""))[:_DIAGNOSTIC_LIMIT]
    status = _specific(status_in(block.get("status", "")), status_in(diagnostic))
    kind = BounceKind.SOFT if action == "delayed" else kind_of_status(status, BounceKind.HARD)
    return BouncedRecipient(address, kind, status, action, diagnostic)


def _specific(status: str | None, in_diagnostic: str | None) -> str | None:
    """The Status field, unless it is only `X.0.0` and the diagnostic names a more
    specific code of the same class (Exim writes 5.0.0 above "550 5.1.1 ...")."""
    if status is None:
        return in_diagnostic
    if in_diagnostic and status.endswith(".0.0") and in_diagnostic[0] == status[0]:
        return in_diagnostic
    return status


def _typed_address(value: str | None) -> str:
    """`rfc822; user@example.com` → `user@example.com` (also without the type)."""
    if not value:
        return ""
    address = _typed_value(value).strip().strip("<>").strip()
    return address if "@" in address and " " not in address else ""


def _typed_value(value: str) -> str:
    """The value after an RFC 3464 type (`smtp; 550 ...` → `550 ...`), on one line."""
    kind, sep, rest = value.partition(";")
    text = rest if sep and " " not in kind.strip() else value
    return " ".join(text.split())


def feedback_recipients(message: Message, feedback: dict[str, str]) -> tuple[str, ...]:
    """Whom a feedback report is about: its Original-Rcpt-To, else the To of the
    reported message (attached whole or as headers)."""
    named = _typed_address(feedback.get("original-rcpt-to"))
    if named:
        return (named,)
    original = part_of_type(message, "message/rfc822", "text/rfc822-headers")
    if original is None:
        return ()
    headers = field_blocks(text_of(original))
    to = headers[0].get("to", "") if headers else ""
    return tuple(_addresses(to))


def original_message_id(message: Message) -> str | None:
    """The Message-ID of the message a report returns (attached whole or as headers)."""
    original = part_of_type(message, "message/rfc822", "text/rfc822-headers")
    if original is None:
        return None
    for block in field_blocks(text_of(original))[:1]:
        value = block.get("message-id", "").strip()
        return value or None
    return None


_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def _addresses(text: str) -> list[str]:
    found: list[str] = []
    for address in _ADDRESS.findall(text):
        if address.lower() not in {a.lower() for a in found}:
            found.append(address)
    return found
