"""Refuse request bodies over the size limit with 413 before anything parses them.

One limit for every body ([limits] max_message_size), except paths given
their own: POST /v1/uploads streams one file, limited by max_attachment_size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# (bytes, the setting that says so)
Limit = tuple[int, str]


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, *,
                 per_path: Mapping[str, Limit] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), (self.max_bytes,
                                                          "limits.max_message_size"))
        declared = _content_length(scope)
        if declared is not None and declared > limit[0]:
            await _reply_413(send, limit)
            return
        await self._guarded(scope, receive, send, limit)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: Limit) -> None:
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit[0]:
                raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reply_413(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reply_413(send: Send, limit: Limit) -> None:
    max_bytes, setting = limit
    body: dict[str, Any] = {"error": {"code": "message_too_large", "message":
                            f"the request body is over the limit of {max_bytes:,} bytes "
                            f"({setting})"}}
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
