"""`POST /v1/messages/raw` with the message itself as the body (`Content-Type:
message/rfc822`, as `curl --data-binary @mail.eml` sends a file), made into the route's
JSON before the route reads it, so that its checks, its limits and its Idempotency-Key
are the same for both forms: `?rcpt_to=` (repeated) are the envelope recipients (none:
the To, Cc and Bcc headers' addresses) and `?relay=` forces a relay.

The body's size is limited before this reads it (`BodyLimit`, `[limits]
max_message_size`), as the JSON form's is.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox.api.media import RAW_MESSAGE as PATH
from outbox.api.media import media_type

MEDIA_TYPE = "message/rfc822"

OPENAPI = {  # what the route documents of this form, beside its JSON body
    "requestBody": {"content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
    "parameters": [
        {"name": "rcpt_to", "in": "query", "required": False, "style": "form", "explode": True,
         "schema": {"type": "array", "items": {"type": "string"}},
         "description": f"with a {MEDIA_TYPE} body: the envelope recipients (repeat it for "
                        "each); none: the To, Cc and Bcc headers' addresses"},
        {"name": "relay", "in": "query", "required": False, "schema": {"type": "string"},
         "description": f"with a {MEDIA_TYPE} body: force a relay by name"}]}


class Rfc822Body:
    """ASGI middleware: a message/rfc822 body for `PATH` becomes the route's JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _applies(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await Request(scope, receive).body()
        except ClientDisconnect:  # before the end: a message cut short is not queued
            return
        payload = json.dumps(_as_json(body, scope)).encode()
        headers = [(name, value) for name, value in scope["headers"]
                   if name not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode())]
        given = False

        async def replayed() -> Message:
            nonlocal given
            if given:
                return await receive()  # what comes after the body: a disconnect
            given = True
            return {"type": "http.request", "body": payload, "more_body": False}

        await self.app({**scope, "headers": headers}, replayed, send)


def _applies(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
        return False
    types = [value for name, value in scope["headers"] if name == b"content-type"]
    return bool(types) and media_type(types[-1].decode("latin-1")) == MEDIA_TYPE


def _as_json(body: bytes, scope: Scope) -> dict[str, Any]:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    document: dict[str, Any] = {"data": base64.b64encode(body).decode("ascii"),
                                "rcpt_to": query.get("rcpt_to", [])}
    if "relay" in query:
        document["relay"] = query["relay"][-1]
    return document
