"""`probe`: set a session up against a relay, send nothing, QUIT.

What `outbox doctor` and `outbox relay test` (and the UI's "test
connection") show about a relay. A probe never raises for an SMTP or network reason: the
failure, what the relay said, and the transcript are in the `ProbeResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.report import SessionFailure
from outbox.delivery.auth import Authenticator
from outbox.delivery.smtp.errors import SessionError
from outbox.delivery.smtp.info import SessionInfo
from outbox.delivery.smtp.session import SmtpSession


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What `outbox doctor` and `outbox relay test` show about a relay."""

    relay: str
    failure: SessionFailure | None
    info: SessionInfo
    transcript: str

    @property
    def ok(self) -> bool:
        return self.failure is None


async def probe(relay: RelaySettings, delivery: DeliverySettings, *,
                authenticators: Sequence[Authenticator] | None = None) -> ProbeResult:
    """Connect, EHLO, TLS and AUTH without sending anything, then QUIT."""
    session = SmtpSession(relay, delivery, authenticators)
    try:
        await session.setup()
    except SessionError as exc:
        return ProbeResult(relay.name, exc.failure, session.info, exc.transcript)
    await session.close()
    return ProbeResult(relay.name, None, session.info, session.transcript.render())
