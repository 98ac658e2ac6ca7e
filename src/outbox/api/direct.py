"""`POST /v1/messages` without FastAPI's generic request handling when the request is
well formed: the route most clients call, once per message.

`FastSubmit`, the innermost of the app's own middleware, answers a request that needs
none of FastAPI's work itself: a JSON body that parses and validates, and an
Idempotency-Key, if any, of a valid length. It calls the same key check and the same
endpoint work as the route (`queue_message`), and its exceptions are answered by the
app's own handlers. Through Starlette's exception middleware, FastAPI's exit stack, the
router and FastAPI's handler (its dependency solver and response model), the API layer
cost such a submit about half again as much (bench/api_cost.py). Anything else (a body
that does not parse or validate, another content type, a key of the wrong length)
goes on to the router and FastAPI's handler, with the body as it came, which answers
it as it always has, so each refusal keeps its one source.
"""

from __future__ import annotations

import io
import json

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from outbox.api.auth import sender
from outbox.api.media import is_json
from outbox.api.ratelimit import admit_messages
from outbox.api.schemas import IDEMPOTENCY_KEY_LENGTH, MessageIn
from outbox.api.spool import replay, stable
from outbox.service import Outbox, request_hash
from outbox.service.keys import Principal
from outbox.views.models import Accepted
from outbox.views.render import accepted_view


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


class FastSubmit:
    """Pure ASGI, installed first (the innermost of the app's own middleware): a `POST`
    to `route`'s path answered here when it is well formed, in `route`'s name (the
    request counter's label), its exceptions answered by `fastapi`'s handlers as its
    exception middleware answers them; everything else to the app as it came."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI, route: APIRoute) -> None:
        self.app = app
        self.route = route
        handlers = {key: handler for key, handler in fastapi.exception_handlers.items()
                    if key not in (500, Exception)}  # as FastAPI builds its own stack
        self._answering = ExceptionMiddleware(self._answer, handlers=handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"] != self.route.path):
            await self.app(scope, receive, send)
            return
        await self._answering(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await well_formed(request)
        key = request.headers.get("idempotency-key")
        if body is None or (key is not None and len(key) not in IDEMPOTENCY_KEY_LENGTH):
            await self.app(scope, replay(io.BytesIO(await request.body()), receive), send)
            return
        scope["route"] = self.route
        answer, replayed = await queue_message(request, await sender(request), body, key)
        content = answer.model_dump(mode="json", by_alias=True)
        response: Response = (
            JSONResponse(content, 200, headers={"Idempotent-Replayed": "true"}) if replayed
            else JSONResponse(content, self.route.status_code or 200))
        await response(scope, receive, send)


async def well_formed(request: Request) -> MessageIn | None:
    """The body as a message, or None when it is not plainly a valid one."""
    if not is_json(request.headers.get("content-type") or ""):
        return None
    try:
        return MessageIn.model_validate(json.loads(await request.body()))
    except (ValueError, ValidationError):
        return None
