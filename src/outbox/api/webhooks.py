"""Event webhook endpoints over HTTP (scope `admin`), SPEC §2:

    POST   /v1/webhooks                 {url, events, secret?, batch_size?, description?}
                                        → 201, the endpoint with its secret (shown once)
    GET    /v1/webhooks                 the endpoints (never their secrets)
    GET    /v1/webhooks/{id}            one endpoint
    DELETE /v1/webhooks/{id}            remove it and its delivery log
    POST   /v1/webhooks/{id}/enable     a disabled endpoint gets events again
    GET    /v1/webhooks/{id}/deliveries its delivery log, newest first
    POST   /v1/webhooks/{id}/redeliver  {event_id}: send that event again (422 unless the
                                        endpoint subscribes to its type)
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, field_validator

from outbox.api.auth import Principal, require
from outbox.api.schemas import JSON_INTEGER, Strict
from outbox.core.webhooks import WEBHOOK_EVENTS
from outbox.service import Outbox
from outbox.service.webhooks import MIN_SECRET, Webhooks
from outbox.views.webhooks import (
    DeliveryLog,
    EndpointCreated,
    EndpointList,
    EndpointOut,
    created_view,
    endpoint_view,
    log_view,
)

router = APIRouter(prefix="/v1")
Admin = Annotated[Principal, Depends(require("admin"))]


# http(s)://host[:port][/path?query#fragment]: a host name (not an IP address in
# disguise, such as "0" or "127.1": its last label starts with a letter), or an IPv4 address.
# Not an IPv6 literal: a pattern loose enough to be short let invalid ones through, which
# the fuzzer then found refused (a schema-valid request answered 422).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = (rf"(?:{_LABEL}\.)*[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.?"
         r"|(?:[0-9]{1,3}\.){3}[0-9]{1,3}")
_PORT = r"(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_REST = r"(?:[/?#][!-~]*)?"  # a path, query or fragment: printable ASCII
WEBHOOK_URL = rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:{_HOST})(?::{_PORT})?{_REST}$"
_URL = re.compile(WEBHOOK_URL)


class EndpointIn(Strict):
    url: str = Field(max_length=2000, json_schema_extra={"pattern": WEBHOOK_URL},
        description="http(s) URL; a host that resolves to private or loopback addresses is "
        "refused unless [webhooks] allowed_networks allows it (checked again at each "
        "delivery; a host that does not resolve yet is accepted)")
    events: list[Annotated[str, Field(json_schema_extra={"enum": [*WEBHOOK_EVENTS, "*"]})]] = (
        Field(min_length=1, description=f"any of {', '.join(WEBHOOK_EVENTS)}; "
              "or [\"*\"] for all"))
    secret: str | None = Field(None, max_length=200, json_schema_extra={
        "pattern": rf"^\s*$|\S[\s\S]{{{MIN_SECRET - 2},}}\S"},
        description=f"signs the requests; at least {MIN_SECRET} characters; left out or "
        "blank: one is made and returned once")
    batch_size: Annotated[int, Field(ge=1), JSON_INTEGER] = Field(
        1, description="events per request, up to [webhooks] max_batch; with more than 1 "
        "the body is {\"events\": [...]}")
    description: str = Field("", max_length=500)


    @field_validator("url")
    @classmethod
    def _url_form(cls, url: str) -> str:
        # The pattern itself (in the document) was the whole message: 400 characters of
        # regular expression, telling a user nothing (found by a stranger pass).
        if not _URL.match(url):
            raise ValueError("must be http:// or https://, a host name or an IPv4 address, an "
                             "optional :port, then a path: 'https://hooks.example.com/outbox' "
                             "(for an IPv6 address, use a host name)")
        return url


class RedeliverIn(Strict):
    event_id: str = Field(max_length=40, json_schema_extra={
        "pattern": r"^\s*(?:evt_)?[0-9]{1,18}\s*$"}, description="evt_... from a delivery "
        "or the log")


class Redelivered(BaseModel):
    deliveries: int


async def webhooks(request: Request) -> Webhooks:
    outbox: Outbox = request.app.state.outbox
    return outbox.webhooks


Hooks = Annotated[Webhooks, Depends(webhooks)]


@router.post("/webhooks", status_code=201, response_model=EndpointCreated)
async def add_endpoint(body: EndpointIn, hooks: Hooks, _: Admin) -> EndpointCreated:
    """Add an endpoint; it gets the events recorded from now on, each POST signed."""
    created = await hooks.add(body.url, body.events, secret=body.secret,
                              batch_size=body.batch_size, description=body.description)
    return created_view(created.endpoint, created.secret)


@router.get("/webhooks", response_model=EndpointList)
async def list_endpoints(hooks: Hooks, _: Admin) -> EndpointList:
    return EndpointList(endpoints=[endpoint_view(e) for e in await hooks.list()])


@router.get("/webhooks/{id}", response_model=EndpointOut)
async def get_endpoint(id: str, hooks: Hooks, _: Admin) -> EndpointOut:
    return endpoint_view(await hooks.get(id))


@router.delete("/webhooks/{id}", status_code=204)
async def remove_endpoint(id: str, hooks: Hooks, _: Admin) -> Response:
    await hooks.remove(id)
    return Response(status_code=204)


@router.post("/webhooks/{id}/enable", response_model=EndpointOut)
async def enable_endpoint(id: str, hooks: Hooks, _: Admin) -> EndpointOut:
    """Enable an endpoint that was disabled after failing: its pending events resume."""
    await hooks.enable(id)
    return endpoint_view(await hooks.get(id))


@router.get("/webhooks/{id}/deliveries", response_model=DeliveryLog)
async def delivery_log(id: str, hooks: Hooks, _: Admin,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50,
                       before: Annotated[int | None, Query(ge=1)] = None) -> DeliveryLog:
    """The endpoint's deliveries, newest first, with the receiver's last answer."""
    return log_view(await hooks.log(id, limit, before), limit)


@router.post("/webhooks/{id}/redeliver", status_code=202, response_model=Redelivered)
async def redeliver(id: str, body: RedeliverIn, hooks: Hooks, _: Admin) -> Redelivered:
    """Send an event to this endpoint again, with the same event id: one of a type it
    subscribes to (else 422, naming its types)."""
    return Redelivered(deliveries=await hooks.redeliver(body.event_id, id))
