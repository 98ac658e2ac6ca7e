"""Identifiers: time-ordered message ids and Message-ID header values."""

from __future__ import annotations

import secrets
import time


def new_message_key() -> str:
    """32 hex digits, sortable by creation time (48-bit ms clock + 80 random bits)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def new_message_id(domain: str) -> str:
    """A globally unique Message-ID header value, angle brackets included."""
    return f"<{secrets.token_hex(16)}@{domain or 'outbox.invalid'}>"
