"""`SessionInfo`: what a relay told us while a session was set up.

Filled in by `SmtpSession.setup` (greeting, EHLO extensions, TLS, AUTH) and
read by the pool's `on_open` hook, the relay gate, `doctor` and `smtp-test`.
It holds observations only; nothing here talks to the relay.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime

from outbox.core.model import Reply


@dataclass(slots=True)
class SessionInfo:
    """What the relay told us while the session was set up."""

    greeting: Reply | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    auth_mechanisms: tuple[str, ...] = ()
    tls_version: str | None = None
    cipher: str | None = None
    auth_mechanism: str | None = None
    certificate_expires: datetime | None = None  # a verified certificate's notAfter

    @property
    def size_limit(self) -> int | None:
        value = self.extensions.get("size", "").strip()
        return int(value) if value.isdigit() and int(value) > 0 else None

    def offers(self, extension: str) -> bool:
        return extension.lower() in self.extensions


def not_after(certificate: object) -> datetime | None:
    """When a verified peer certificate expires (unverified ones carry no fields)."""
    if not isinstance(certificate, dict) or "notAfter" not in certificate:
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(certificate["notAfter"]), UTC)
