"""API keys over HTTP (scope `admin`): POST /v1/keys shows the new key once;
GET /v1/keys lists names and scopes; DELETE /v1/keys/{name} revokes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from outbox.api.auth import Principal, require
from outbox.api.schemas import Strict
from outbox.api.views import iso
from outbox.apikeys import ApiKeys
from outbox.service import Outbox
from outbox.store.base import StoredApiKey

router = APIRouter(prefix="/v1")
Admin = Annotated[Principal, Depends(require("admin"))]


class KeyIn(Strict):
    name: str = Field(description="who uses the key; also scopes its idempotency keys")
    scopes: list[str] = Field(default_factory=lambda: ["send", "read"],
                              description="send, read, admin")


class KeyOut(BaseModel):
    name: str
    scopes: list[str]
    created_at: str | None
    revoked_at: str | None


class KeyCreated(KeyOut):
    key: str = Field(description="shown this once; only its SHA-256 is stored")


class KeyList(BaseModel):
    keys: list[KeyOut]


def key_view(record: StoredApiKey) -> KeyOut:
    return KeyOut(name=record.name, scopes=list(record.scopes),
                  created_at=iso(record.created_at), revoked_at=iso(record.revoked_at))


def api_keys(request: Request) -> ApiKeys:
    outbox: Outbox = request.app.state.outbox
    return ApiKeys(outbox.settings, outbox.store, clock=outbox.clock)


Keys = Annotated[ApiKeys, Depends(api_keys)]


@router.post("/keys", status_code=201, response_model=KeyCreated)
async def create_key(body: KeyIn, keys: Keys, _: Admin) -> KeyCreated:
    created = await keys.create(body.name, body.scopes)
    return KeyCreated(**key_view(created.record).model_dump(), key=created.key)


@router.get("/keys", response_model=KeyList)
async def list_keys(keys: Keys, _: Admin) -> KeyList:
    return KeyList(keys=[key_view(k) for k in await keys.list()])


@router.delete("/keys/{name}", status_code=204)
async def revoke_key(name: str, keys: Keys, _: Admin) -> Response:
    await keys.revoke(name)
    return Response(status_code=204)
