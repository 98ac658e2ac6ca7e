"""What the transport observed during one SMTP session for one message.

The transport fills this in and decides nothing; `core.classify` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from outbox.core.model import Reply


class Stage(StrEnum):
    """Where in the session something went wrong, in protocol order."""

    PREPARE = "prepare"  # before any command: the message could not be made ready
    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    SIZE_CHECK = "size_check"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    AFTER_DATA = "after_data"  # the final "." left Outbox; no reply came back


class Condition(StrEnum):
    """Failures that are not an SMTP reply. Each is also a guidance key."""

    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_TIMEOUT = "connection_timeout"
    CONNECTION_DROPPED = "connection_dropped"
    COMMAND_TIMEOUT = "command_timeout"
    DNS_FAILURE = "dns_failure"
    NETWORK_UNREACHABLE = "network_unreachable"
    TLS_CERT_EXPIRED = "tls_certificate_expired"
    TLS_HOSTNAME_MISMATCH = "tls_hostname_mismatch"
    TLS_SELF_SIGNED = "tls_self_signed"
    TLS_UNKNOWN_CA = "tls_unknown_ca"
    TLS_VERSION_MISMATCH = "tls_version_mismatch"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    STARTTLS_NOT_OFFERED = "starttls_not_offered"
    AUTH_NOT_OFFERED = "auth_not_offered"
    AUTH_NEEDS_TLS = "auth_needs_tls"
    AUTH_NOT_CONFIRMED = "auth_not_confirmed"  # AUTH answered, but not with 235
    TOKEN_REFRESH_FAILED = "token_refresh_failed"
    TOKEN_ENDPOINT_UNAVAILABLE = "token_endpoint_unavailable"
    AWAITING_CREDENTIALS = "relay_awaiting_credentials"  # its last login failed: not retried
    MESSAGE_TOO_BIG = "message_too_big_for_relay"
    SMTPUTF8_REQUIRED = "smtputf8_required"
    ATTACHMENT_CORRUPT = "attachment_corrupt"  # a blob is missing or fails its sha256
    ATTACHMENT_UNREADABLE = "attachment_unreadable"  # the blob store failed; try again
    PROTOCOL_ERROR = "protocol_error"
    RELAY_NOT_CONFIGURED = "relay_not_configured"
    RELAY_BACKING_OFF = "relay_backing_off"  # the governor holds the relay's mail back
    RELAY_SESSIONS_BUSY = "relay_sessions_busy"  # waited too long for a turn (delivery/lane.py)


@dataclass(frozen=True, slots=True)
class SessionFailure:
    """The session ended early. `reply` is set when the server said no (a 421
    greeting, a 535 to AUTH); `condition` when it did not answer at all."""

    stage: Stage
    reply: Reply | None = None
    condition: Condition | None = None
    detail: str = ""
    retry_after: timedelta | None = None  # the relay is backing off this long (core.governor)


@dataclass(slots=True)
class DeliveryReport:
    """Every reply of one attempt to hand one message to one relay."""

    relay: str
    recipients: tuple[str, ...]
    mail_reply: Reply | None = None
    rcpt_replies: dict[str, Reply] = field(default_factory=dict)
    data_reply: Reply | None = None
    failure: SessionFailure | None = None
    data_sent: bool = False
    transcript: str = ""

    def replies(self) -> list[Reply]:
        """Every reply the relay gave in this session, in order."""
        said = [self.mail_reply, *self.rcpt_replies.values(), self.data_reply,
                self.failure.reply if self.failure is not None else None]
        return [reply for reply in said if reply is not None]
