"""`parse_bounce(raw)`: what a message that came back to the bounce address is. Pure.

In order, the first that fits decides:

1. a feedback report (ARF, RFC 5965: multipart/report; report-type=feedback-report,
   or a message/feedback-report part) is a COMPLAINT about its Original-Rcpt-To (or
   the reported message's To);
2. a delivery status notification (RFC 3464: report-type=delivery-status, or a
   message/delivery-status part) is HARD or SOFT per recipient by its Action and
   Status; one whose recipients were all delivered or relayed is NOT_BOUNCE;
3. a non-standard bounce (`core.bounces.text`) is read from its words;
4. an auto-reply (RFC 3834 Auto-Submitted other than "no", X-Autoreply,
   X-Autorespond, Precedence auto_reply, or an out-of-office subject) is AUTO_REPLY,
   never a bounce: a vacation notice must not suppress anyone;
5. anything else is NOT_BOUNCE.

The order matters: DSNs carry `Auto-Submitted: auto-replied` too. Bytes that are not
a message at all raise `errors.BounceUnreadable`, and nothing else is raised.
"""

from __future__ import annotations

import re
from email import message_from_bytes
from email.errors import MessageError
from email.message import Message
from email.utils import getaddresses

from outbox.core.bounces.report import (
    dsn_recipients,
    feedback_recipients,
    field_blocks,
    header_text,
    original_message_id,
    part_of_type,
    report_type,
    text_of,
)
from outbox.core.bounces.text import is_text_bounce, text_recipients
from outbox.core.bounces.values import BouncedRecipient, BounceFormat, BounceKind, BounceReport
from outbox.errors import BounceUnreadable

MAX_BOUNCE_SIZE = 10_000_000  # bytes read of one bounce; the copy of the message is cut
_ADDRESSED = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
_AUTO_SUBJECT = re.compile(
    r"^(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|autoreply|"
    r"vacation|on vacation|abwesenheit|r[ée]ponse automatique|absence)|"
    r"\b(out of (the )?office|automatic reply|auto-reply|autoreply)\b", re.I)
_MESSAGE_ID = re.compile(r"^message-id:\s*(<[^>\s]+>)", re.I | re.M)


def parse_bounce(raw: bytes) -> BounceReport:
    """What `raw` (a whole message as it arrived) is; `BounceUnreadable` when it is
    not a message at all (empty, or no header)."""
    if not isinstance(raw, bytes) or not raw.strip():
        raise BounceUnreadable("the bounce is empty")
    try:
        message = message_from_bytes(raw[:MAX_BOUNCE_SIZE])
        if not message.keys():
            raise BounceUnreadable("the bounce has no header")
        return _classify(message)
    except (MessageError, ValueError, LookupError, UnicodeError, IndexError) as exc:
        raise BounceUnreadable(f"the bounce could not be read: {exc}") from exc


def _classify(message: Message) -> BounceReport:
    base = BounceReport(
        kind=BounceKind.NOT_BOUNCE, format=BounceFormat.NONE,
        addressed_to=_addressed_to(message), summary=_summary(message),
        original_message_id=original_message_id(message) or _text_message_id(message))
    feedback = part_of_type(message, "message/feedback-report")
    if report_type(message) == "feedback-report" or feedback is not None:
        return _complaint(message, feedback, base)
    status = part_of_type(message, "message/delivery-status", "message/global-delivery-status")
    if report_type(message) == "delivery-status" or status is not None:
        return _dsn(message, status, base)
    if is_text_bounce(message):
        return _text_bounce(message, base)
    if is_auto_reply(message):
        return _with(base, BounceKind.AUTO_REPLY, BounceFormat.HEADERS)
    return base


def _complaint(message: Message, feedback: Message | None, base: BounceReport) -> BounceReport:
    fields = _first_block(text_of(feedback)) if feedback is not None else {}
    recipients = tuple(BouncedRecipient(address, BounceKind.COMPLAINT)
                       for address in feedback_recipients(message, fields))
    return _with(base, BounceKind.COMPLAINT, BounceFormat.ARF, recipients,
                 feedback_type=fields.get("feedback-type", "abuse").strip().lower())


def _dsn(message: Message, status: Message | None, base: BounceReport) -> BounceReport:
    if status is None:  # report-type=delivery-status with the status part as text
        status = _second_part(message)
    recipients = dsn_recipients(text_of(status)) if status is not None else ()
    if not recipients:
        return _with(base, BounceKind.NOT_BOUNCE, BounceFormat.DSN)
    kind = BounceKind.HARD if any(r.kind is BounceKind.HARD for r in recipients) \
        else BounceKind.SOFT
    return _with(base, kind, BounceFormat.DSN, recipients)


def _text_bounce(message: Message, base: BounceReport) -> BounceReport:
    own = {address.lower() for address in base.addressed_to}
    own |= {address.lower() for _, address in getaddresses(message.get_all("from", []))}
    recipients = text_recipients(message, own)
    if not recipients:
        return _with(base, BounceKind.NOT_BOUNCE, BounceFormat.TEXT)
    kind = BounceKind.HARD if any(r.kind is BounceKind.HARD for r in recipients) \
        else BounceKind.SOFT
    return _with(base, kind, BounceFormat.TEXT, recipients)


def is_auto_reply(message: Message) -> bool:
    """RFC 3834 and the common vendor headers, or an out-of-office subject."""
    auto_submitted = str(message.get("auto-submitted", "")).strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return True
    if any(message.get(name) for name in ("x-autoreply", "x-autorespond", "x-autoresponse")):
        return True
    precedence = str(message.get("precedence", "")).strip().lower()
    if precedence == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(header_text(message, "subject")))


def _with(base: BounceReport, kind: BounceKind, format: BounceFormat,
          recipients: tuple[BouncedRecipient, ...] = (), feedback_type: str = "",
          ) -> BounceReport:
    return BounceReport(kind, format, recipients, base.original_message_id,
                        base.addressed_to, feedback_type, base.summary)


def _first_block(text: str) -> dict[str, str]:
    blocks = field_blocks(text)
    return blocks[0] if blocks else {}


def _second_part(message: Message) -> Message | None:
    parts = message.get_payload() if message.is_multipart() else None
    if isinstance(parts, list) and len(parts) > 1 and isinstance(parts[1], Message):
        return parts[1]
    return None


def _addressed_to(message: Message) -> tuple[str, ...]:
    values = [str(value) for name in _ADDRESSED for value in message.get_all(name, [])]
    found: list[str] = []
    for _, address in getaddresses(values):
        if "@" in address and address not in found:
            found.append(address)
    return tuple(found)


def _text_message_id(message: Message) -> str | None:
    """A non-standard bounce quotes the returned message's headers in its text."""
    for part in message.walk():
        if part.get_content_maintype() == "text":
            match = _MESSAGE_ID.search(text_of(part))
            if match:
                return match.group(1)
    return None


def _summary(message: Message) -> str:
    return f"from {header_text(message, 'from')!r}, subject {header_text(message, 'subject')!r}"
