"""The SMTP delivery edge: sessions to relays, pooled, reporting every reply.

`SessionPool.deliver` is what the worker calls; `probe` is what `outbox
doctor` and `outbox relay test` call. Only `delivery.smtp` imports aiosmtplib.
"""

from outbox.delivery.auth import (
    AuthChannel,
    Authenticator,
    LoginAuth,
    PlainAuth,
    authenticators_for,
)
from outbox.delivery.pool import SessionPool, pool_key
from outbox.delivery.smtp.errors import SessionError
from outbox.delivery.smtp.info import SessionInfo
from outbox.delivery.smtp.probe import ProbeResult, probe
from outbox.delivery.smtp.session import SmtpSession, open_session

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
