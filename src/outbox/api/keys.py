"""API keys over HTTP (scope `admin`): POST /v1/keys shows the new key once;
GET /v1/keys lists names and scopes; DELETE /v1/keys/{name} revokes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from outbox.api.auth import Principal, require
from outbox.api.schemas import JSON_INTEGER, Strict
from outbox.service import Outbox
from outbox.service.keys import SCOPES, ApiKeys
from outbox.store.base import StoredApiKey
from outbox.views.render import iso

router = APIRouter(prefix="/v1")
Admin = Annotated[Principal, Depends(require("admin"))]
MAX_RATE = 2**31 - 1  # a per-minute limit the database's integer column holds
Rate = Annotated[int, Field(ge=0, le=MAX_RATE), JSON_INTEGER]


class KeyIn(Strict):
    name: str = Field(description="who uses the key; also scopes its idempotency keys; "
                      "1-64 letters, digits, '.', '_' or '-'", json_schema_extra={
                          "pattern": r"^\s*[A-Za-z0-9][A-Za-z0-9._-]{0,63}\s*$"})
    scopes: list[Annotated[str, Field(json_schema_extra={"enum": list(SCOPES)})]] = Field(
        default_factory=lambda: ["send", "read"], json_schema_extra={"minItems": 1},
        description="send, read, admin")
    requests_per_minute: Rate | None = Field(
        None, description="API requests a minute; 0: unlimited; left out: "
        "[auth] requests_per_minute")
    messages_per_minute: Rate | None = Field(
        None, description="messages a minute; 0: unlimited; left out: "
        "[auth] messages_per_minute")


class KeyOut(BaseModel):
    name: str
    scopes: list[str]
    created_at: str | None
    revoked_at: str | None
    requests_per_minute: int | None = Field(description="null: [auth]'s default")
    messages_per_minute: int | None = Field(description="null: [auth]'s default")


class KeyCreated(KeyOut):
    key: str = Field(description="shown this once; only its SHA-256 is stored")


class KeyList(BaseModel):
    keys: list[KeyOut]


def key_view(record: StoredApiKey) -> KeyOut:
    return KeyOut(name=record.name, scopes=list(record.scopes),
                  created_at=iso(record.created_at), revoked_at=iso(record.revoked_at),
                  requests_per_minute=record.requests_per_minute,
                  messages_per_minute=record.messages_per_minute)


async def api_keys(request: Request) -> ApiKeys:
    outbox: Outbox = request.app.state.outbox
    return outbox.keys


Keys = Annotated[ApiKeys, Depends(api_keys)]


@router.post("/keys", status_code=201, response_model=KeyCreated)
async def create_key(body: KeyIn, keys: Keys, _: Admin) -> KeyCreated:
    created = await keys.create(body.name, body.scopes,
                                requests_per_minute=body.requests_per_minute,
                                messages_per_minute=body.messages_per_minute)
    return KeyCreated(**key_view(created.record).model_dump(), key=created.key)


@router.get("/keys", response_model=KeyList)
async def list_keys(keys: Keys, _: Admin) -> KeyList:
    return KeyList(keys=[key_view(k) for k in await keys.list()])


@router.delete("/keys/{name}", status_code=204)
async def revoke_key(name: str, keys: Keys, _: Admin) -> Response:
    await keys.revoke(name)
    return Response(status_code=204)
