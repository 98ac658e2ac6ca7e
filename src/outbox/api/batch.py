"""`POST /v1/messages/batch`: up to 500 messages in one request, committed together.

Each item is a `POST /v1/messages` body plus its own `idempotency_key`, checked on
its own: a bad item is refused and the others go on. `results` come in the items'
order, each the accepted message (`replayed` for an idempotent replay) or the error
object, its `field` prefixed with the item's place (`messages[3].to[0]`). The new
messages are committed together (one transaction; one group commit on SQLite), and
the 200 leaves after that commit. An `Idempotency-Key` header is refused (422), not
ignored: a client retrying with it would otherwise queue every message again. An item
whose key another request of this process is still answering gets the error
`idempotency_key_in_flight` (api/inflight.py); its retry, after that answer, is a replay.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field, JsonValue, ValidationError

from outbox.api.auth import Principal, require
from outbox.api.errors import explain
from outbox.api.inflight import KeysInFlight
from outbox.api.ratelimit import admit_messages
from outbox.api.schemas import ErrorBody, ErrorOut, MessageIn, Shape
from outbox.api.spool import stable
from outbox.errors import (
    IdempotencyInProgress,
    IdempotencyKeyNotSupported,
    IdempotencyKeyReused,
    InputError,
)
from outbox.service import BatchItem, Outbox, Submitted, request_hash
from outbox.views.models import Accepted

MAX_BATCH = 500

router = APIRouter(prefix="/v1")
Sender = Annotated[Principal, Depends(require("send"))]
# Declared so that the document shows it is refused: one key cannot stand for up to 500
# bodies (an item's key does). No value is valid ("not": {}), so a generated request
# that the document calls valid never carries it.
RequestKey = Annotated[str | None, Header(
    description="not taken here: a batch with it is refused, 422 "
    "idempotency_key_not_supported; give each item its own idempotency_key",
    json_schema_extra={"not": {}})]


class BatchMessageIn(MessageIn):
    idempotency_key: str | None = Field(None, min_length=1, max_length=255, description=(
        "this item's Idempotency-Key: a replay gives the earlier message back"))


class BatchIn(Shape):
    # Items are validated one by one in the route (each a Strict MessageIn), so that one
    # bad item does not refuse the whole batch: the document says so, each item is a
    # message or any other JSON value, which gets its error in `results`, in its place.
    messages: list[Annotated[BatchMessageIn | JsonValue,
                             Field(union_mode="left_to_right")]] = Field(
        min_length=1, max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} messages; an item that is not a valid message "
        "gets its error in results, in its place")


class BatchAccepted(Accepted):
    replayed: bool = Field(description="true: an earlier message with this "
                           "idempotency_key, given back; nothing new was queued")


class BatchOut(BaseModel):
    results: list[BatchAccepted | ErrorOut] = Field(description="one per item, in order: "
                                                    "the accepted message or the error")


@router.post("/messages/batch", response_model=BatchOut)
async def submit_batch(body: BatchIn, request: Request, principal: Sender,
                       idempotency_key: RequestKey = None) -> BatchOut:
    """Queue up to 500 messages; every accepted one is on disk before this answers.
    Items are independent: each result is the message or that item's error. Each item
    takes its own idempotency_key; an Idempotency-Key header is refused (422)."""
    if idempotency_key is not None:  # before any message is counted or queued
        raise IdempotencyKeyNotSupported(
            "a batch takes an idempotency key per item: give each one in "
            "messages[i].idempotency_key, not in the Idempotency-Key header",
            field="Idempotency-Key")
    outbox: Outbox = request.app.state.outbox
    in_flight: KeysInFlight = request.app.state.keys_in_flight
    items, claimed = _claimed([_item(index, raw, outbox) for index, raw in
                               enumerate(body.messages)], principal.name, in_flight)
    try:
        valid = [item for item in items if isinstance(item, BatchItem)]
        # Over the key's messages_per_minute: 429 for the batch, and none of it is queued.
        await admit_messages(request, principal, len(valid))
        submitted = iter(await outbox.messages.submit_many(valid, owner=principal.name))
        results = [_result(index, next(submitted) if isinstance(item, BatchItem) else item)
                   for index, item in enumerate(items)]
    finally:  # committed by now: a retry after the answer is a replay
        for key in claimed:
            in_flight.release(principal.name, key)
    return BatchOut(results=results)


def _claimed(items: list[BatchItem | ErrorOut], owner: str,
             in_flight: KeysInFlight) -> tuple[list[BatchItem | ErrorOut], set[str]]:
    """The items, each whose key another request of this process is still answering
    replaced by its 409-like error (api/inflight.py); and the keys claimed here, for the
    caller to release. A key given twice in this batch is claimed once: the service
    answers the second item as it always has."""
    mine: set[str] = set()
    kept: list[BatchItem | ErrorOut] = []
    for index, item in enumerate(items):
        key = item.idempotency_key if isinstance(item, BatchItem) else None
        if key is not None and key not in mine and not in_flight.claim(owner, key):
            error = IdempotencyInProgress()
            kept.append(ErrorOut(error=ErrorBody(code=error.code, message=error.message,
                                                 field=f"messages[{index}].idempotency_key")))
            continue
        if key is not None:
            mine.add(key)
        kept.append(item)
    return kept, mine


def _item(index: int, raw: BatchMessageIn | JsonValue,
          outbox: Outbox) -> BatchItem | ErrorOut:
    try:
        item = raw if isinstance(raw, BatchMessageIn) else BatchMessageIn.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        code, message, field = explain(dict(error), tuple(error["loc"]), f"messages[{index}]")
        return ErrorOut(error=ErrorBody(code=code, message=message, field=field))
    if item.idempotency_key is None:  # only a key compares the hash
        return BatchItem(item.to_submission())
    # Hashed as POST /v1/messages hashes the same body, so a key means the same there.
    sent = stable(item.model_dump(mode="json", by_alias=True, exclude_unset=True,
                                  exclude={"idempotency_key"}), outbox.files)
    return BatchItem(item.to_submission(), item.idempotency_key, request_hash(sent))


def _result(index: int, outcome: Submitted | InputError | ErrorOut) -> BatchAccepted | ErrorOut:
    if isinstance(outcome, ErrorOut):
        return outcome
    if isinstance(outcome, InputError):
        return ErrorOut(error=ErrorBody(code=outcome.code, message=outcome.message,
                                        field=_field(index, outcome)))
    message = outcome.message
    return BatchAccepted(id=message.id, status=message.status.value,
                         message_id=message.message_id, replayed=outcome.replayed)


def _field(index: int, exc: InputError) -> str:
    where = f"messages[{index}]"
    if isinstance(exc, IdempotencyKeyReused):
        return f"{where}.idempotency_key"
    return f"{where}.{exc.field}" if exc.field else where
