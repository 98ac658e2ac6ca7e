"""Relays and their login (scope `admin`): GET /v1/relays with each relay's state,
PUT /v1/relays/{name}/credentials, POST /v1/relays/{name}/test.

Credentials go in and never come out: responses say which kind of login a
relay uses and where its credentials come from, never a secret.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from outbox.api.auth import Principal, require
from outbox.api.schemas import Strict
from outbox.core import guidance as catalogue
from outbox.service import Outbox
from outbox.service.relays import CredentialsUpdate, Relays, RelayStatus
from outbox.views.models import GuidanceOut
from outbox.views.render import guidance_view, iso

router = APIRouter(prefix="/v1")
Admin = Annotated[Principal, Depends(require("admin"))]


class OAuth2In(Strict):
    refresh_token: str | None = Field(None, description="from the provider's consent flow")
    client_id: str | None = None
    client_secret: str | None = None
    token_url: str | None = Field(None, json_schema_extra={"pattern": r"^\s*https?://"})
    scope: str | None = None


class CredentialsIn(Strict):
    """New credentials; a field left out keeps its current value. At least one of
    username, password, oauth2; not both password and oauth2. What the relay does not
    have and the request leaves out (a username, OAuth2's token_url, client_id or
    refresh_token) is a 409 credentials_incomplete naming the field."""

    model_config = ConfigDict(json_schema_extra={"allOf": [
        {"anyOf": [{"required": [name], "properties": {name: {"type": kind}}}
                   for name, kind in (("username", "string"), ("password", "string"),
                                      ("oauth2", "object"))]},
        {"anyOf": [{"properties": {"password": {"type": "null"}}},
                   {"properties": {"oauth2": {"type": "null"}}}]},
    ]})

    username: str | None = Field(None, json_schema_extra={"pattern": r"\S"},
                                 description="the account to log in as")
    password: str | None = Field(None, json_schema_extra={"minLength": 1},
                                 description="for PLAIN/LOGIN (an app password with MFA)")
    oauth2: OAuth2In | None = Field(None, description="for XOAUTH2")

    @model_validator(mode="after")
    def _one_kind(self) -> CredentialsIn:
        if self.password is not None and self.oauth2 is not None:
            raise ValueError("give either password or oauth2, not both")
        return self

    def to_update(self) -> CredentialsUpdate:
        o = self.oauth2 or OAuth2In()
        return CredentialsUpdate(username=self.username, password=self.password,
                                 refresh_token=o.refresh_token, client_secret=o.client_secret,
                                 client_id=o.client_id, token_url=o.token_url, scope=o.scope)


class RelayOut(BaseModel):
    name: str
    host: str
    port: int
    security: str
    auth: str = Field(description="password | oauth2 | none")
    username: str
    credentials: str = Field(description="config, or stored (set through the CLI or API)")
    state: str = Field(description="ok | needs_attention (its mail is held)")
    reason: str = Field(description="what the relay or token endpoint said")
    guidance: str | None
    guidance_detail: GuidanceOut | None
    updated_at: str | None
    delivery: str = Field(description="open | backing_off (its mail waits, no attempt "
                          "spent) | probing | throttled (fewer sessions at once)")
    delivery_detail: str = Field(description="e.g. 'backing off until T after 3 failure(s)'")
    session_limit: int = Field(description="sessions at once the relay is allowed now")
    backoff_until: str | None = Field(description="when the relay is tried again")


class RelayList(BaseModel):
    relays: list[RelayOut]


class CredentialsSaved(BaseModel):
    relay: RelayOut
    released: int = Field(description="held messages released to the queue")


class RelayTestOut(BaseModel):
    relay: str
    ok: bool
    mechanism: str | None = Field(description="the AUTH mechanism that logged in")
    tls: str | None
    failure: str | None
    guidance: str | None
    released: int


def relay_view(status: RelayStatus) -> RelayOut:
    g = catalogue.describe(status.guidance) if status.guidance else None
    detail = guidance_view(g) if g else None
    return RelayOut(name=status.name, host=status.host, port=status.port,
                    security=status.security, auth=status.auth, username=status.username,
                    credentials=status.source, state=status.state, reason=status.reason,
                    guidance=g.one_line() if g else None, guidance_detail=detail,
                    updated_at=iso(status.updated_at), delivery=status.delivery,
                    delivery_detail=status.delivery_detail, session_limit=status.session_limit,
                    backoff_until=iso(status.backoff_until))


async def relays(request: Request) -> Relays:
    outbox: Outbox = request.app.state.outbox
    return outbox.relays


Credentials = Annotated[Relays, Depends(relays)]


@router.get("/relays", response_model=RelayList)
async def list_relays(credentials: Credentials, _: Admin) -> RelayList:
    """Every configured relay, its login kind and its state."""
    return RelayList(relays=[relay_view(s) for s in await credentials.statuses()])


@router.put("/relays/{name}/credentials", response_model=CredentialsSaved)
async def set_credentials(name: str, body: CredentialsIn, credentials: Credentials,
                          _: Admin) -> CredentialsSaved:
    """Store new credentials (encrypted), mark the relay ok and release its held mail."""
    status, released = await credentials.set_credentials(name, body.to_update())
    return CredentialsSaved(relay=relay_view(status), released=released)


@router.post("/relays/{name}/test", response_model=RelayTestOut)
async def test_relay(name: str, credentials: Credentials, _: Admin) -> RelayTestOut:
    """Log in without sending anything; a relay that works again gets its mail released."""
    tested = await credentials.test(name)
    result, g = tested.result, tested.guidance
    return RelayTestOut(relay=name, ok=result.ok, mechanism=result.info.auth_mechanism,
                        tls=result.info.tls_version,
                        failure=str(result.failure.reply or result.failure.condition)
                        if result.failure else None,
                        guidance=g.one_line() if g else None, released=tested.released)
