"""The FastAPI application: routes are thin calls into `service.Outbox`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from outbox import __version__
from outbox.api import alerts, contacts, errors, files, keys, metrics, relays
from outbox.api.auth import KeyRing, Principal, require
from outbox.api.body_limit import BodyLimit
from outbox.api.schemas import (
    Accepted,
    AttemptOut,
    ErrorOut,
    MessageIn,
    MessageList,
    MessageOut,
    ResendIn,
)
from outbox.api.views import attempt_view, detail_view, message_view
from outbox.core.model import MessageStatus
from outbox.observability import DeliveryMetrics
from outbox.service import Outbox, request_hash

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 429)
}

router = APIRouter(prefix="/v1", responses=ERRORS)


def service(request: Request) -> Outbox:
    outbox: Outbox = request.app.state.outbox
    return outbox


Service = Annotated[Outbox, Depends(service)]
Sender = Annotated[Principal, Depends(require("send"))]
Reader = Annotated[Principal, Depends(require("read"))]


@router.post("/messages", status_code=202, response_model=Accepted,
             responses={200: {"model": Accepted, "description": "idempotent replay"}})
async def submit_message(body: MessageIn, response: Response,
                         outbox: Service, principal: Sender,
                         idempotency_key: Annotated[str | None, Header()] = None) -> Accepted:
    """Queue a message; it is on disk before this answers."""
    # The hash comes from the validated body as the client sent it (unset fields left
    # out), so the JSON is parsed once and key order or spacing never matter.
    sent = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    accepted = await outbox.submit(body.to_submission(), owner=principal.name,
                                   idempotency_key=idempotency_key, body_hash=request_hash(sent))
    if accepted.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    m = accepted.message
    return Accepted(id=m.id, status=m.status.value, message_id=m.message_id)


@router.get("/messages", response_model=MessageList)
async def list_messages(outbox: Service, _: Reader,
                        status: MessageStatus | None = None,
                        limit: Annotated[int, Query(ge=1, le=500)] = 50,
                        cursor: str | None = None) -> MessageList:
    page = await outbox.list_messages(status, limit, cursor)
    return MessageList(messages=[message_view(m) for m in page.messages],
                       next_cursor=page.next_cursor)


@router.get("/messages/{id}", response_model=MessageOut)
async def get_message(id: str, outbox: Service, _: Reader) -> MessageOut:
    return detail_view(await outbox.get(id))


@router.get("/messages/{id}/attempts", response_model=list[AttemptOut])
async def get_attempts(id: str, outbox: Service, _: Reader) -> list[AttemptOut]:
    return [attempt_view(a) for a in await outbox.attempts(id)]


@router.post("/messages/{id}/retry", response_model=MessageOut)
async def retry_message(id: str, outbox: Service, _: Sender) -> MessageOut:
    """Try again now; also releases a held message."""
    await outbox.retry(id)
    return detail_view(await outbox.get(id))


@router.post("/messages/{id}/resend", status_code=202, response_model=Accepted)
async def resend_message(id: str, body: ResendIn, outbox: Service,
                         principal: Sender) -> Accepted:
    """Queue a new copy with a new Message-ID, linked to this one. A message that
    already reached someone needs {"confirm": true}."""
    m = await outbox.resend(id, confirm=body.confirm, owner=principal.name)
    return Accepted(id=m.id, status=m.status.value, message_id=m.message_id)


@router.post("/messages/{id}/cancel", response_model=MessageOut)
async def cancel_message(id: str, outbox: Service, _: Sender) -> MessageOut:
    await outbox.cancel(id)
    return detail_view(await outbox.get(id))


def create_app(outbox: Outbox, delivery_metrics: DeliveryMetrics | None = None) -> FastAPI:
    """The API; `delivery_metrics`: the worker's counters in this process, for /metrics."""
    app = FastAPI(title="Outbox", version=__version__,
                  description="Outbound email that gets delivered and explains every failure.")
    app.state.outbox = outbox
    app.state.keyring = KeyRing(outbox.settings, outbox.store)
    errors.install(app)
    app.include_router(router)
    app.include_router(alerts.router, responses=ERRORS)
    app.include_router(contacts.router, responses=ERRORS)
    app.include_router(relays.router, responses=ERRORS)
    app.include_router(keys.router, responses=ERRORS)
    app.include_router(files.router, responses=ERRORS)
    app.include_router(files.downloads)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        await outbox.stats()
        return JSONResponse({"status": "ok", "version": __version__})

    limits = outbox.settings.limits
    app.add_middleware(BodyLimit, max_bytes=limits.max_message_size, per_path={
        files.UPLOADS_PATH: (limits.max_attachment_size, "limits.max_attachment_size")})
    metrics.install(app, outbox, delivery_metrics)  # its middleware outermost: sees every answer
    return app
