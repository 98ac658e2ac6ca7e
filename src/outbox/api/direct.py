"""`POST /v1/messages` without FastAPI's generic request handling when the request is
well formed: the route most clients call, once per message.

FastAPI's handler resolves the route's dependencies through its generic solver and
serialises the answer through the response model: about half of what the API layer
costs a small submit (bench/api_cost.py). This route class answers a request that needs
none of that itself: a JSON body that parses and validates, and an Idempotency-Key, if
any, of a valid length. It calls the same key check and the same endpoint work as the
generic handler. Anything else (a body that does not parse or validate, another
content type, a key of the wrong length) goes to FastAPI's handler, which answers it as
it always has, so each refusal keeps its one source.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from outbox.api.auth import sender
from outbox.api.media import is_json
from outbox.api.ratelimit import admit_messages
from outbox.api.schemas import IDEMPOTENCY_KEY_LENGTH, MessageIn
from outbox.api.spool import stable
from outbox.service import Outbox, request_hash
from outbox.service.keys import Principal
from outbox.views.models import Accepted
from outbox.views.render import accepted_view

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


async def queue_message(request: Request, principal: Principal, body: MessageIn,
                        idempotency_key: str | None) -> tuple[Accepted, bool]:
    """The work of `POST /v1/messages`: the answer, and whether it is a replay."""
    outbox: Outbox = request.app.state.outbox
    await admit_messages(request, principal)  # over the key's limit: 429, nothing queued
    # The hash comes from the validated body as the client sent it (unset fields left
    # out), so the JSON is parsed once and key order or spacing never matter. Only a
    # key compares it: without one, none is made.
    body_hash = None if idempotency_key is None else request_hash(
        stable(body.model_dump(mode="json", by_alias=True, exclude_unset=True), outbox.files))
    accepted = await outbox.messages.submit(body.to_submission(), owner=principal.name,
                                            idempotency_key=idempotency_key,
                                            body_hash=body_hash)
    return accepted_view(accepted.message), accepted.replayed


class DirectSubmit(APIRoute):
    """The route of `POST /v1/messages`, answering well-formed requests itself."""

    def get_route_handler(self) -> Handler:
        generic = super().get_route_handler()

        async def handler(request: Request) -> Response:
            body = await well_formed(request)
            key = request.headers.get("idempotency-key")
            if body is None or (key is not None and len(key) not in IDEMPOTENCY_KEY_LENGTH):
                return await generic(request)
            answer, replayed = await queue_message(request, await sender(request), body, key)
            content = answer.model_dump(mode="json", by_alias=True)
            if replayed:
                return JSONResponse(content, 200, headers={"Idempotent-Replayed": "true"})
            return JSONResponse(content, self.status_code or 200)

        return handler


async def well_formed(request: Request) -> MessageIn | None:
    """The body as a message, or None when it is not plainly a valid one."""
    if not is_json(request.headers.get("content-type") or ""):
        return None
    try:
        return MessageIn.model_validate(json.loads(await request.body()))
    except (ValueError, ValidationError):
        return None
