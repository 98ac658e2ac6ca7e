"""One-click unsubscribe (RFC 8058): the links messages carry, and what a click does.

A message submitted with `list_unsubscribe` (API) gets `List-Unsubscribe:
<{public_url}/unsubscribe/{token}>` and `List-Unsubscribe-Post:
List-Unsubscribe=One-Click` (`core.unsubscribe`); it must have exactly one recipient.
A POST to the link (the mailbox provider's one-click, or the page's button) puts the
address on the suppression list (reason `unsubscribe`) and adds an `unsubscribed`
event to the message.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

import structlog

from outbox.clock import utcnow
from outbox.config import Settings
from outbox.core.model import Event, EventType
from outbox.core.suppression import SuppressionReason
from outbox.core.unsubscribe import make_token, read_token, unsubscribe_headers
from outbox.errors import LinkInvalid, NotFound
from outbox.service.suppressions import Suppressions
from outbox.store.base import Store

log = structlog.get_logger("outbox.unsubscribe")

UNSUBSCRIBE_KEY_NAME = "unsubscribe"


class Unsubscribes:
    def __init__(self, settings: Settings, store: Store, suppressions: Suppressions, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.suppressions = suppressions
        self.clock = clock
        self._key: bytes | None = None

    async def key(self) -> bytes:
        if self._key is None:
            self._key = await self.store.keys.signing_key(
                UNSUBSCRIBE_KEY_NAME, secrets.token_bytes(32), self.clock())
        return self._key

    def base_url(self) -> str:
        server = self.settings.server
        return (server.public_url or f"http://{server.bind}").rstrip("/")

    async def headers_for(self, message_id: str, address: str) -> dict[str, str]:
        token = make_token(message_id, address.lower(), await self.key())
        return unsubscribe_headers(f"{self.base_url()}/unsubscribe/{token}")

    async def check(self, token: str) -> tuple[str, str]:
        """(message id, address) of a link Outbox made; `LinkInvalid` otherwise."""
        found = read_token(token, await self.key())
        if found is None:
            raise LinkInvalid("this unsubscribe link is not valid")
        return found

    async def unsubscribe(self, token: str) -> str:
        """Suppress the link's address; returns it. `LinkInvalid` for a bad link."""
        message_id, address = await self.check(token)
        await self.suppressions.add(address, reason=SuppressionReason.UNSUBSCRIBE,
                                    detail="one-click unsubscribe (List-Unsubscribe-Post)",
                                    source_message=message_id)
        try:
            await self.store.messages.append_event(message_id, Event(
                self.clock(), EventType.UNSUBSCRIBED, recipient=address,
                guidance="bounce.unsubscribed"))
        except NotFound:
            log.info("unsubscribe for a message that is gone", message=message_id)
        return address
