"""The SMTP delivery edge: sessions to relays, pooled, reporting every reply.

`SessionPool.deliver` is what the worker calls; `probe` is what `outbox
doctor` and `smtp-test` call. Only `transport` imports aiosmtplib.
"""

from outbox.delivery.pool import SessionPool, pool_key
from outbox.delivery.transport import (
    AuthChannel,
    Authenticator,
    LoginAuth,
    PlainAuth,
    ProbeResult,
    SessionError,
    SessionInfo,
    SmtpSession,
    authenticators_for,
    open_session,
    probe,
)

__all__ = [
    "AuthChannel",
    "Authenticator",
    "LoginAuth",
    "PlainAuth",
    "ProbeResult",
    "SessionError",
    "SessionInfo",
    "SessionPool",
    "SmtpSession",
    "authenticators_for",
    "open_session",
    "pool_key",
    "probe",
]
