"""Idempotency keys in flight: a second request with a key whose first request this
process is still answering gets `409 idempotency_key_in_flight` and `Retry-After: 1`.

A client that timed out and retried while its first request (a large body still
arriving, or its commit) is under way learns to wait for the first answer instead of
racing it. The pair claimed is (API key name, Idempotency-Key), the scope of the replay.
`InFlightKeys` claims it from the request's headers, before the body is read (so the
window covers a body that is still arriving), for `POST /v1/messages`,
`/v1/messages/raw` and `/v1/messages/{id}/resend`; the batch route claims its items' keys itself
(api/batch.py). The claim ends when the answer starts: the message is committed by
then, so a retry that follows the answer is a replay.

Only this process knows its claims: with several processes or nodes on one database,
the same request sent to two of them still makes one message, the later one to reach
the database answered as the replay (a unique constraint on the key, not a
check-then-insert).
"""

from __future__ import annotations

import re

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox.api.errors import outbox_error
from outbox.api.schemas import IDEMPOTENCY_KEY_LENGTH
from outbox.errors import IdempotencyInProgress, OutboxError
from outbox.service import Outbox
from outbox.service.keys import Principal

# Where api/auth.py finds the principal this middleware already authenticated, so a
# key stored in the database is looked up once per request.
PRINCIPAL = "outbox.principal"
KEYED = re.compile(r"/v1/messages(/raw|/[^/]+/resend)?")
SUBMITTING_SCOPES = frozenset({"send", "admin"})

Claim = tuple[str, str]  # (API key name, Idempotency-Key)


class KeysInFlight:
    """The claims of this process; one event loop, so a set needs no lock."""

    def __init__(self) -> None:
        self._held: set[Claim] = set()

    def claim(self, owner: str, key: str) -> bool:
        """True if the pair was free and is now this caller's to `release`."""
        if (owner, key) in self._held:
            return False
        self._held.add((owner, key))
        return True

    def release(self, owner: str, key: str) -> None:
        self._held.discard((owner, key))


class InFlightKeys:
    """Pure ASGI, outside `SpooledJson` (which reads the whole body first)."""

    def __init__(self, app: ASGIApp, outbox: Outbox, keys: KeysInFlight) -> None:
        self.app = app
        self.outbox = outbox
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _keyed(scope)
        principal = None if key is None else await self._sender(scope)
        if key is None or principal is None:
            await self.app(scope, receive, send)
            return
        owner = principal.name
        if not self.keys.claim(owner, key):
            response = await outbox_error(Request(scope), IdempotencyInProgress())
            await response(scope, receive, send)
            return
        scope[PRINCIPAL] = principal
        claimed = True

        async def releasing_send(message: Message) -> None:
            nonlocal claimed
            if claimed and message["type"] == "http.response.start":
                # Before the client can read the answer and send its retry.
                self.keys.release(owner, key)
                claimed = False
            await send(message)

        try:
            await self.app(scope, receive, releasing_send)
        finally:
            if claimed:
                self.keys.release(owner, key)

    async def _sender(self, scope: Scope) -> Principal | None:
        """The caller, if it may submit; otherwise the route answers (401, 403)."""
        try:
            principal = await self.outbox.keys.authenticate(_header(scope, b"authorization"))
        except OutboxError:
            return None
        return principal if principal.scopes & SUBMITTING_SCOPES else None


def _keyed(scope: Scope) -> str | None:
    """The Idempotency-Key of a request that takes one, if valid (else the route refuses)."""
    if scope["type"] != "http" or scope["method"] != "POST" or not KEYED.fullmatch(
            scope["path"]):
        return None
    key = _header(scope, b"idempotency-key")
    return key if key is not None and len(key) in IDEMPOTENCY_KEY_LENGTH else None


def _header(scope: Scope, name: bytes) -> str | None:
    for header, value in scope.get("headers", ()):
        if header == name:
            return bytes(value).decode("latin-1")
    return None
