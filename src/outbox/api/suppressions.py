"""The suppression list over HTTP: GET/POST /v1/suppressions, DELETE
/v1/suppressions/{address}. Reading needs `read`, changing it `admin`."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from outbox.api.auth import Principal, require
from outbox.api.described import ADDRESS
from outbox.api.schemas import JSON_INTEGER
from outbox.service import Outbox
from outbox.views.suppressions import SuppressionOut, suppression_view

router = APIRouter(prefix="/v1")
Reader = Annotated[Principal, Depends(require("read"))]
Admin = Annotated[Principal, Depends(require("admin"))]


class SuppressionList(BaseModel):
    suppressions: list[SuppressionOut]
    next_after: str | None = Field(description="pass as ?after= for the next page")


class SuppressionIn(BaseModel):
    model_config = {"extra": "forbid"}
    address: str = Field(json_schema_extra=ADDRESS)
    detail: str = Field("", max_length=500, description="why (shown in the list)")
    expires_in_days: Annotated[int, Field(ge=1, le=36500), JSON_INTEGER] | None = Field(
        None, description="none: until removed")


def _outbox(request: Request) -> Outbox:
    outbox: Outbox = request.app.state.outbox
    return outbox


@router.get("/suppressions", response_model=SuppressionList)
async def list_suppressions(
        request: Request, _: Reader,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(description="the last address of the "
                                                        "previous page")] = None,
) -> SuppressionList:
    """Suppressed addresses, by address."""
    entries = await _outbox(request).suppressions.list(limit, after)
    return SuppressionList(suppressions=[suppression_view(e) for e in entries],
                           next_after=entries[-1].address if len(entries) == limit else None)


@router.post("/suppressions", status_code=201, response_model=SuppressionOut,
             responses={200: {"model": SuppressionOut, "description": "replaced"}})
async def add_suppression(request: Request, body: SuppressionIn, response: Response,
                          _: Admin) -> SuppressionOut:
    """Add an address (201), or replace its entry (200)."""
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    entry, created = await _outbox(request).suppressions.add(
        body.address, detail=body.detail, expires_in=expires)
    if not created:
        response.status_code = 200
    return suppression_view(entry)


@router.delete("/suppressions/{address}", status_code=204)
async def remove_suppression(request: Request, address: str, _: Admin) -> Response:
    """Take an address off the list (404 when it is not on it)."""
    await _outbox(request).suppressions.remove(address)
    return Response(status_code=204)
