"""HMAC-SHA256 signatures of the requests Outbox posts, and their check.

Both webhooks sign `"<unix seconds>.<raw body>"` with a shared secret:

    alert webhook    Outbox-Signature: t=<seconds>,v1=<hex>           (service.alerts)
    event webhooks   Outbox-Timestamp: <seconds>                       (SPEC §2)
                     Outbox-Signature: v1=<hex>

A receiver recomputes the HMAC, compares in constant time and refuses an old
timestamp (a replay). Pure: the caller passes the time.
"""

from __future__ import annotations

import hashlib
import hmac

REPLAY_TOLERANCE = 300  # seconds a signed request stays acceptable


def mac(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<body>` keyed with the secret's UTF-8 bytes."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def event_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The event webhooks' Outbox-Signature value: `v1=<hex>`."""
    return f"v1={mac(secret, timestamp, body)}"


def signatures(header: str, scheme: str = "v1") -> list[str]:
    """The `scheme=` values of a signature header (several when a secret rotates)."""
    parts = (part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    return [value for name, value in parts if name == scheme]


def is_fresh(timestamp: int, now: float, tolerance: float = REPLAY_TOLERANCE) -> bool:
    return abs(now - timestamp) <= tolerance


def verify_event(secret: str, timestamp: str, signature: str, body: bytes, now: float,
                 tolerance: float = REPLAY_TOLERANCE) -> bool:
    """True when the Outbox-Signature header signs `body` sent at the Outbox-Timestamp
    header's time with `secret`, and that time is recent enough."""
    if not timestamp.isdigit() or not is_fresh(int(timestamp), now, tolerance):
        return False
    expected = mac(secret, int(timestamp), body)
    return any(hmac.compare_digest(expected, given) for given in signatures(signature))
