"""Statuses of messages and recipients, event types, and the outcome value.

The transport reports what the server said; `core.classify` turns that into
`Outcome`s; `core.retry` turns outcomes into decisions. Nothing here acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    DEFERRED = "deferred"
    SENT = "sent"
    PARTIALLY_SENT = "partially_sent"
    FAILED = "failed"
    HELD = "held"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_MESSAGE_STATUSES

    @property
    def can_cancel(self) -> bool:
        return self in {MessageStatus.QUEUED, MessageStatus.DEFERRED, MessageStatus.HELD}

    @property
    def can_retry(self) -> bool:
        return self in {
            MessageStatus.DEFERRED, MessageStatus.HELD, MessageStatus.FAILED,
            MessageStatus.PARTIALLY_SENT,
        }


FINAL_MESSAGE_STATUSES = frozenset({
    MessageStatus.SENT, MessageStatus.PARTIALLY_SENT, MessageStatus.FAILED, MessageStatus.CANCELLED,
})


class RecipientStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"  # the relay took it, then a bounce (DSN) said it failed for good

    @property
    def is_final(self) -> bool:
        return self in {RecipientStatus.SENT, RecipientStatus.FAILED, RecipientStatus.BOUNCED}


class EventType(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    ATTEMPT = "attempt"
    DEFERRED = "deferred"
    SENT = "sent"
    PARTIALLY_SENT = "partially_sent"  # the message: some recipients sent, the rest failed
    FAILED = "failed"
    HELD = "held"
    RELEASED = "released"
    UNCERTAIN = "uncertain"
    CANCELLED = "cancelled"
    ALERT = "alert"
    RESENT = "resent"
    BOUNCED = "bounced"  # a bounce (DSN) came back for a recipient, hard or soft
    COMPLAINED = "complained"  # a feedback-loop report (ARF): the recipient said spam
    UNSUBSCRIBED = "unsubscribed"  # the recipient used the one-click unsubscribe


class OutcomeKind(StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    HELD = "held"
    UNCERTAIN = "uncertain"


class Scope(StrEnum):
    """How far a failure reaches: one recipient, the whole message, or every
    message that goes through the same relay (Postfix `smtp_trouble.c`)."""

    RECIPIENT = "recipient"
    MESSAGE = "message"
    RELAY = "relay"


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: basic code, RFC 3463 enhanced code if given, text."""

    code: int
    enhanced: str | None
    text: str

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        parts = [str(self.code)]
        if self.enhanced:
            parts.append(self.enhanced)
        if self.text:
            parts.append(self.text)
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt means for one recipient (or, with scope RELAY or
    MESSAGE, for all recipients of the attempt)."""

    kind: OutcomeKind
    scope: Scope
    guidance: str
    reply: Reply | None = None
    retry_after: timedelta | None = None
    detail: str = ""
    # The relay failed as a whole before the message's turn (core.governor): the
    # relay backs off and its mail waits without spending attempts (SPEC §2).
    relay_wide: bool = False


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do with a recipient after a non-final outcome."""

    give_up: bool
    retry_at: datetime | None
    reason: str = ""
    guidance: str = ""  # a guidance key when giving up: max_attempts_reached | max_age_reached


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a message is held as it is accepted (a policy at submit), for the operator."""

    reason: str
    guidance: str | None = None  # the guidance key on the `held` event


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    type: EventType
    attempt: int | None = None
    recipient: str | None = None
    reply_code: int | None = None
    enhanced_code: str | None = None
    reply: str | None = None
    guidance: str | None = None  # a guidance key (core.guidance.describe renders it)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RecipientUpdate:
    address: str
    status: RecipientStatus
    reply_code: int | None = None
    enhanced_code: str | None = None
    reply: str | None = None
    guidance: str | None = None
