"""Refuse request bodies over their limits before anything parses them.

Size: 413 at once for a Content-Length over the route's limit, and for a chunked
body as soon as the bytes read pass it. Every route has a limit: messages and
batches `[limits] max_message_size`, uploads `max_attachment_size`, contact
imports `max_message_size`, everything else `max_request_size`.
Depth: a JSON body nesting deeper than `max_json_depth` is refused with 400 as
soon as the scanner sees it (`core.json_depth`), before the parser recurses. The
routes that take their body as bytes (`raw_paths`: uploads, contact imports) are
not scanned, whatever their Content-Type: a file sent without one is not JSON.

FastAPI turns any exception raised while it reads the body into its own 400
("There was an error parsing the body"); `refusal_of` finds ours behind it, so
`api.errors` answers with the status and the key that says so.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox.core.json_depth import DepthScanner, TooDeep

# (bytes, the setting that says so)
Limit = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str


class BodyRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def too_large(limit: Limit) -> Refusal:
    max_bytes, setting = limit
    return Refusal(413, "message_too_large", f"the request body is over the limit of "
                   f"{max_bytes:,} bytes ({setting})")


def too_deep(limit: int) -> Refusal:
    return Refusal(400, "json_too_deep", f"the JSON body nests deeper than {limit} levels "
                   "(limits.max_json_depth)")


def refusal_of(exc: BaseException) -> Refusal | None:
    """Ours, when FastAPI's 400 for an unreadable body was caused by a limit."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BodyRefused):
            return seen.refusal
        seen = seen.__cause__ or seen.__context__
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, *,
                 default: Limit | None = None, max_depth: int = 32,
                 per_path: Mapping[str, Limit] | None = None,
                 raw_paths: Collection[str] = ()) -> None:
        self.app = app
        self.raw_paths = frozenset(raw_paths)
        self.default = default or (max_bytes, "limits.max_message_size")
        self.max_depth = max_depth
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.default)
        declared = _content_length(scope)
        if declared is not None and declared > limit[0]:
            await reply(send, too_large(limit))
            return
        await self._guarded(scope, receive, send, limit)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: Limit) -> None:
        seen = 0
        started = False
        scanned = scope.get("path", "") not in self.raw_paths and _is_json(scope)
        scanner = DepthScanner(self.max_depth) if scanned else None

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            body = message.get("body", b"")
            seen += len(body)
            if seen > limit[0]:
                raise BodyRefused(too_large(limit))
            if scanner is not None:
                try:
                    scanner.feed(body)
                except TooDeep:
                    raise BodyRefused(too_deep(self.max_depth)) from None
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyRefused as exc:
            if not started:
                await reply(send, exc.refusal)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(scope: Scope) -> bool:
    """FastAPI parses a body without a Content-Type as JSON too."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return True


async def reply(send: Send, refusal: Refusal) -> None:
    body: dict[str, Any] = {"error": {"code": refusal.code, "message": refusal.message}}
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": refusal.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
