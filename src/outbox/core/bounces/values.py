"""What a bounce says, as values: its kind, and per recipient the status, the action
and the remote server's words. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from outbox.core.guidance import key_for_reply
from outbox.core.model import Reply


class BounceKind(StrEnum):
    """What a message that came back to the bounce address is."""

    HARD = "hard"  # delivery failed for good (a 5.x.x status): the address is bad
    SOFT = "soft"  # delayed, or failed for a reason that may pass (a 4.x.x status)
    COMPLAINT = "complaint"  # a feedback-loop report (ARF): the recipient said "spam"
    AUTO_REPLY = "auto_reply"  # vacation, out-of-office, autoresponder: never a bounce
    NOT_BOUNCE = "not_bounce"  # nothing recognisable as any of the above


class BounceFormat(StrEnum):
    DSN = "dsn"  # RFC 3464 multipart/report; report-type=delivery-status
    ARF = "arf"  # RFC 5965 multipart/report; report-type=feedback-report
    TEXT = "text"  # a non-standard bounce read from its text (qmail, Exim, ...)
    HEADERS = "headers"  # auto-replies, recognised by their headers and subject
    NONE = "none"


_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b", re.ASCII)
_BASIC = re.compile(r"\b([245][0-5]\d)\b", re.ASCII)


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    """One recipient a bounce reports on."""

    address: str
    kind: BounceKind  # HARD or SOFT for bounces, COMPLAINT for a report
    status: str | None = None  # the RFC 3463 status, "5.1.1"
    action: str = ""  # failed | delayed (DSN Action), "" when not said
    diagnostic: str = ""  # the remote server's words (DSN Diagnostic-Code), one line

    @property
    def reply(self) -> Reply:
        """The bounce as the SMTP reply the remote server gave (or would have)."""
        code = _reply_code(self.diagnostic, self.status, self.kind)
        return Reply(code, self.status, self.diagnostic)

    @property
    def guidance(self) -> str:
        """The catalogue key for what the remote server said (`core.guidance`)."""
        if self.kind is BounceKind.COMPLAINT:
            return "bounce.complaint"
        return key_for_reply(self.reply)


@dataclass(frozen=True, slots=True)
class BounceReport:
    """A bounce, read: what it is, whom it is about, and what it came back for."""

    kind: BounceKind
    format: BounceFormat
    recipients: tuple[BouncedRecipient, ...] = ()
    original_message_id: str | None = None  # the bounced message's Message-ID header
    addressed_to: tuple[str, ...] = ()  # To / Delivered-To / X-Original-To: the VERP token
    feedback_type: str = ""  # ARF Feedback-Type (abuse, fraud, ...)
    summary: str = ""  # From and Subject of the bounce, for the operator

    @property
    def is_bounce(self) -> bool:
        return self.kind in {BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT}


def status_in(text: str) -> str | None:
    """The first RFC 3463 enhanced status code in `text` ("5.1.1"), if any."""
    match = _ENHANCED.search(text)
    if match is None:
        return None
    return ".".join(str(int(group)) for group in match.groups())


def kind_of_status(status: str | None, default: BounceKind) -> BounceKind:
    if status is None:
        return default
    return BounceKind.HARD if status.startswith("5") else BounceKind.SOFT


def _reply_code(diagnostic: str, status: str | None, kind: BounceKind) -> int:
    """The basic code in the diagnostic when it agrees with the status's class, else a
    representative one (550 for a hard bounce, 450 for a soft one)."""
    cls = status[0] if status else ("5" if kind is BounceKind.HARD else "4")
    for match in _BASIC.finditer(diagnostic):
        if match.group(1).startswith(cls):
            return int(match.group(1))
    return 550 if cls == "5" else 450
