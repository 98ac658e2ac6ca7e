"""The FastAPI application: routes are thin calls into `service.Outbox`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from outbox import __version__
from outbox.api import (
    alerts,
    batch,
    contacts,
    described,
    docs,
    errors,
    files,
    keys,
    metrics,
    relays,
    rfc822,
    suppressions,
    unsubscribe,
    webhooks,
)
from outbox.api.auth import Principal, require, sender
from outbox.api.body_limit import BodyLimit
from outbox.api.direct import FastSubmit, queue_message
from outbox.api.errors import UNAVAILABLE, UnexpectedErrors
from outbox.api.inflight import InFlightKeys, KeysInFlight
from outbox.api.listing import MessageQuery, message_query
from outbox.api.media import declared_methods_only, json_only, published_methods
from outbox.api.ratelimit import RateLimitHeaders, admit_messages
from outbox.api.raw import RawMessageIn, queue_raw
from outbox.api.rfc822 import Rfc822Body
from outbox.api.schemas import (
    IdempotencyKey,
    MessageIn,
    MessageKey,
    MessageList,
    ResendIn,
    RetryIn,
)
from outbox.api.spool import SpooledJson
from outbox.observability import NO_TELEMETRY
from outbox.service import Outbox
from outbox.views.models import Accepted, AttemptOut, MessageOut
from outbox.views.render import accepted_view, attempt_view, detail_view, message_view

# The error shape by reference, not as {"model": ErrorOut}: with a model, FastAPI builds a
# pydantic field for each code of each route (about 400, most of the CPU that building the
# routes takes at each start) only to write this same reference into the document. The
# schema it names is there through BatchOut, whose results hold ErrorOut.
ERROR_SHAPE: dict[str, object] = {"content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
ERRORS: dict[int | str, dict[str, object]] = {
    code: ERROR_SHAPE for code in (400, 401, 403, 404, 409, 413, 415, 422, 429)
}
ERRORS[503] = {**ERROR_SHAPE, **UNAVAILABLE}

router = APIRouter(prefix="/v1", responses=ERRORS)
IN_FLIGHT = (
    "idempotency_key_in_flight: the first request with this Idempotency-Key is still being "
    "processed by this server process; retry after Retry-After (1 s) for its answer. "
    "Processes do not see each other's requests in flight: with several on one database, "
    "the same request sent to two of them still makes one message, the later one to reach "
    "the database answered as the replay (a unique constraint).")


def replays(conflict: str = "") -> dict[int | str, dict[str, object]]:
    """The answers of a route that takes an Idempotency-Key; `conflict`: its other 409."""
    return {200: {"model": Accepted, "description": "idempotent replay"},
            409: {**ERROR_SHAPE, "description": f"{conflict}{IN_FLIGHT}", "headers": {
                "Retry-After": {"description": "with idempotency_key_in_flight: seconds "
                                "to wait before the retry", "schema": {"type": "integer"}}}}}


async def service(request: Request) -> Outbox:
    outbox: Outbox = request.app.state.outbox
    return outbox


Service = Annotated[Outbox, Depends(service)]
Sender = Annotated[Principal, Depends(sender)]
Reader = Annotated[Principal, Depends(require("read"))]


async def submit_message(body: MessageIn, request: Request, response: Response,
                         outbox: Service, principal: Sender,
                         idempotency_key: IdempotencyKey = None) -> Accepted:
    """Queue a message; it is on disk before this answers."""
    return replied(response, *await queue_message(request, principal, body, idempotency_key))


def replied(response: Response, answer: Accepted, replayed: bool) -> Accepted:
    """A replay answers 200 and says so; a new message 202."""
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return answer


router.add_api_route("/messages", submit_message, methods=["POST"], status_code=202,
                     response_model=Accepted, responses=replays())


async def submit_raw(body: RawMessageIn, request: Request, response: Response,
                     outbox: Service, principal: Sender,
                     idempotency_key: IdempotencyKey = None) -> Accepted:
    """Queue a message the client built (RFC 5322 bytes in base64) for the envelope
    recipients `rcpt_to`, read as SMTP submission reads one; signed or encrypted mail
    goes out as it came. It is on disk before this answers."""
    return replied(response, *await queue_raw(request, principal, body, idempotency_key))


router.add_api_route("/messages/raw", submit_raw, methods=["POST"], status_code=202,
                     response_model=Accepted, responses=replays(), openapi_extra=rfc822.OPENAPI)


@router.get("/messages", response_model=MessageList)
async def list_messages(outbox: Service, _: Reader,
                        query: Annotated[MessageQuery, Depends(message_query)]) -> MessageList:
    """Newest first, narrowed by every filter given; follow `next_cursor` for more."""
    page = await outbox.messages.list(query.status, query.limit, query.cursor, query.where)
    return MessageList(messages=[message_view(m) for m in page.messages],
                       next_cursor=page.next_cursor)


@router.get("/messages/{id}", response_model=MessageOut)
async def get_message(id: MessageKey, outbox: Service, _: Reader) -> MessageOut:
    return detail_view(await outbox.messages.get(id))


@router.get("/messages/{id}/attempts", response_model=list[AttemptOut])
async def get_attempts(id: MessageKey, outbox: Service, _: Reader) -> list[AttemptOut]:
    return [attempt_view(a) for a in await outbox.messages.attempts(id)]


@router.post("/messages/{id}/retry", response_model=MessageOut, responses={409: {
    **ERROR_SHAPE, "description": "confirmation_required: a try ended uncertain, the relay "
    "probably has the message already; send {\"confirm\": true} for another copy. Or "
    "conflict: the message's status cannot be retried"}})
async def retry_message(id: MessageKey, outbox: Service, _: Sender,
                        body: Annotated[RetryIn | None, Body()] = None) -> MessageOut:
    """Try again now; also releases a held message. A message with an uncertain try
    (the relay probably has it already) needs {"confirm": true}; the body is optional.
    If the database goes just after the retry is stored, the answer is the message with
    its new status but no events (GET it for them once the database is back)."""
    message = await outbox.messages.retry(id, confirm=body is not None and body.confirm)
    return detail_view(await outbox.messages.get_after_change(message))


@router.post("/messages/{id}/resend", status_code=202, response_model=Accepted,
             responses=replays("confirmation_required: the message already reached someone; "
                               "send {\"confirm\": true} for a second copy. Or "))
async def resend_message(id: MessageKey, body: ResendIn, request: Request, response: Response,
                         outbox: Service, principal: Sender,
                         idempotency_key: IdempotencyKey = None) -> Accepted:
    """Queue a new copy with a new Message-ID, linked to this one. A message that
    already reached someone needs {"confirm": true}. With an Idempotency-Key, a
    repeated request answers 200 with the copy it made."""
    await admit_messages(request, principal)
    resent = await outbox.messages.resend(id, confirm=body.confirm, owner=principal.name,
                                          idempotency_key=idempotency_key)
    return replied(response, accepted_view(resent.message), resent.replayed)


@router.post("/messages/{id}/cancel", response_model=MessageOut)
async def cancel_message(id: MessageKey, outbox: Service, _: Sender) -> MessageOut:
    """Cancel mail not delivered yet (queued, deferred or held). If the database goes
    just after the cancel is stored, the answer is the message with its new status but
    no events (GET it for them once the database is back)."""
    message = await outbox.messages.cancel(id)
    return detail_view(await outbox.messages.get_after_change(message))


def create_app(outbox: Outbox) -> FastAPI:
    """The API over the service (and the worker's counters, when this process delivers)."""
    app = FastAPI(title="Outbox", version=__version__,
                  description="Outbound email that gets delivered and explains every failure.",
                  dependencies=[Depends(declared_methods_only), Depends(json_only)],
                  docs_url=None, redoc_url=None, telemetry=NO_TELEMETRY)
    app.state.outbox = outbox
    app.state.keys_in_flight = KeysInFlight()  # api/inflight.py; the batch route's too
    errors.install(app)
    docs.install(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        """200 while the database answers and every loop of this process runs; else
        503 with the reasons (no API key needed, for load balancers and monitors)."""
        live = await outbox.health.liveness()
        body: dict[str, object] = {"status": "ok" if live.ok else "unavailable",
                                   "version": __version__}
        if live.problems:
            body["problems"] = list(live.problems)
        if live.warnings:
            body["warnings"] = list(live.warnings)
        return JSONResponse(body, status_code=200 if live.ok else 503)

    # FastAPI builds an included router's routes when a request first walks past them, in
    # this order: the probe and the message routes, which most clients use, come first.
    documented = [router, batch.router, alerts.router, contacts.router, relays.router,
                  keys.router, files.router, webhooks.router, suppressions.router]
    for included in documented:
        app.include_router(included, responses=ERRORS)
    app.include_router(files.downloads)
    app.include_router(unsubscribe.router)
    app.state.published = published_methods([*documented, files.downloads, unsubscribe.router])

    limits = outbox.settings.limits
    described.install(app, [relay.name for relay in outbox.settings.relays],
                      described.extension_rule(limits.extension_policy,
                                               limits.blocked_extensions,
                                               limits.allowed_extensions),
                      outbox.settings.webhooks.max_batch)
    message_size = (limits.max_message_size, "limits.max_message_size")
    imports = "/v1/contacts/import"  # a CSV or vCard file, as uploads are files
    (submit,) = [route for route in router.routes
                 if isinstance(route, APIRoute) and route.endpoint is submit_message]
    app.add_middleware(Rfc822Body)  # POST /v1/messages/raw's message/rfc822 body
    app.add_middleware(FastSubmit, fastapi=app, route=submit)  # api/direct.py
    app.add_middleware(SpooledJson, files=outbox.files, clock=outbox.clock,
                       threshold=limits.json_spool_threshold)
    app.add_middleware(InFlightKeys, outbox=outbox, keys=app.state.keys_in_flight)
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(
        BodyLimit, max_bytes=limits.max_request_size, max_depth=limits.max_json_depth,
        default=(limits.max_request_size, "limits.max_request_size"), per_path={
            "/v1/messages": message_size, "/v1/messages/batch": message_size,
            "/v1/messages/raw": message_size,
            imports: message_size,
            files.UPLOADS_PATH: (limits.max_attachment_size, "limits.max_attachment_size")},
        raw_paths=(files.UPLOADS_PATH, imports))
    app.add_middleware(RateLimitHeaders)
    metrics.install(app, outbox)  # its middleware outermost: sees every answer
    return app
