"""SMTP replies: parsing the enhanced status code and naming the codes.

RFC 5321 gives the basic three-digit code; RFC 3463 adds `class.subject.detail`
at the start of the text. A reply class says how Outbox must react.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import IntEnum, StrEnum

from outbox.core.model import Reply

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


class ReplyCode(IntEnum):
    SERVICE_READY = 220
    CLOSING = 221
    AUTH_SUCCESSFUL = 235
    OK = 250
    WILL_FORWARD = 251
    CANNOT_VERIFY = 252
    AUTH_CONTINUE = 334
    START_MAIL_INPUT = 354
    SERVICE_NOT_AVAILABLE = 421
    PASSWORD_TRANSITION = 432
    MAILBOX_BUSY = 450
    LOCAL_ERROR = 451
    INSUFFICIENT_STORAGE = 452
    TEMPORARY_AUTH_FAILURE = 454
    SYNTAX_ERROR = 500
    PARAMETER_SYNTAX_ERROR = 501
    NOT_IMPLEMENTED = 502
    BAD_SEQUENCE = 503
    PARAMETER_NOT_IMPLEMENTED = 504
    AUTH_REQUIRED = 530
    AUTH_TOO_WEAK = 534
    AUTH_CREDENTIALS_INVALID = 535
    ENCRYPTION_REQUIRED = 538
    MAILBOX_UNAVAILABLE = 550
    USER_NOT_LOCAL = 551
    STORAGE_EXCEEDED = 552
    MAILBOX_NAME_NOT_ALLOWED = 553
    TRANSACTION_FAILED = 554


class ReplyClass(StrEnum):
    SUCCESS = "success"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    AUTH = "auth"
    THROTTLED = "throttled"


AUTH_CODES = frozenset({530, 534, 535, 538})
# 5.7.0 is left out: outside AUTH it is as often a content rejection as a login problem.
AUTH_ENHANCED = frozenset({"5.7.8", "5.7.9", "5.7.11", "5.7.12", "5.7.14", "5.7.139"})


def parse_reply(code: int, text: str) -> Reply:
    """Split an enhanced status code off the reply text when it agrees with
    the basic code's class (a 250 carrying `5.0.0` is ignored, as RFC 3463
    says the classes must match)."""
    text = (text or "").strip()
    match = _ENHANCED.match(text)
    enhanced = None
    if match and match.group(1) == str(code)[0]:
        enhanced = match.group(0)
        text = text[match.end():].strip()
    return Reply(code=code, enhanced=enhanced, text=text)


def is_throttling(reply: Reply) -> bool:
    """421 (service closing) or any 4.7.x: the server wants us to slow down."""
    if reply.code == ReplyCode.SERVICE_NOT_AVAILABLE:
        return True
    return bool(reply.is_transient and reply.enhanced and reply.enhanced.startswith("4.7."))


def is_auth_problem(reply: Reply) -> bool:
    """A reply that means our credentials or auth method are not accepted."""
    if reply.code in AUTH_CODES:
        return True
    return bool(reply.is_permanent and reply.enhanced in AUTH_ENHANCED)


def classify_reply(reply: Reply, *, during_auth: bool = False) -> ReplyClass:
    """How Outbox must react to one reply. `during_auth` is set for replies to
    AUTH, where any 5xx is a credentials problem rather than a bounce."""
    if reply.is_success:
        return ReplyClass.SUCCESS
    if reply.is_permanent and (during_auth or is_auth_problem(reply)):
        return ReplyClass.AUTH
    if is_throttling(reply):
        return ReplyClass.THROTTLED
    if reply.is_transient:
        return ReplyClass.TRANSIENT
    return ReplyClass.PERMANENT


_DATE = re.compile(r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s*)?\d{1,2}\s+"
                   r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{4}\s+"
                   r"\d{1,2}:\d{2}(?::\d{2})?\s*(?:[+-]\d{4}|UT|UTC|GMT)", re.IGNORECASE)


def greeting_time(text: str) -> datetime | None:
    """The date a greeting carries (`220 mx ESMTP; Mon, 6 Jan 2025 10:00:00 +0100`)."""
    match = _DATE.search(text)
    if match is None:
        return None
    try:
        return parsedate_to_datetime(match.group(0).replace("UTC", "GMT"))
    except (TypeError, ValueError):
        return None
