"""API keys (admin only): the keys of the config file and those made at run time, with
their scopes and creation time; create (the new key is shown on that one answer, never
again: only its SHA-256 is stored); revoke after a confirmation. Same service calls as
/v1/keys and `outbox keys`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from outbox.errors import OutboxError
from outbox.service.keys import SCOPES
from outbox.ui import notices
from outbox.ui.render import page
from outbox.ui.session import Admin, Service, Session

router = APIRouter()


async def _keys_page(request: Request, session: Session, outbox: Service, *,
                     notice: str = "", error: str = "", created: str = "",
                     created_name: str = "", confirm: str = "",
                     code: int = 200) -> HTMLResponse:
    every = await outbox.keys.list()
    stored = [k for k in every if k.revoked_at is None]
    revoked = [k for k in every if k.revoked_at is not None]
    response = page(request, "keys.html", session, code=code, stored=stored, revoked=revoked,
                    configured=outbox.settings.auth.api_keys, scopes=SCOPES, notice=notice,
                    error=error, created=created, created_name=created_name, confirm=confirm)
    response.headers["Cache-Control"] = "no-store"  # the new key is on this answer only
    return response


@router.get("/keys", response_class=HTMLResponse)
async def keys_page(request: Request, session: Admin, outbox: Service,
                    notice: Annotated[str, Query()] = "",
                    revoke: Annotated[str, Query(max_length=64)] = "") -> HTMLResponse:
    return await _keys_page(request, session, outbox, notice=notice, confirm=revoke)


@router.post("/keys", response_class=HTMLResponse)
async def create_key(request: Request, session: Admin, outbox: Service,
                     name: Annotated[str, Form(max_length=64)],
                     scope: Annotated[list[str] | None, Form()] = None) -> HTMLResponse:
    try:
        made = await outbox.keys.create(name, scope or [])
    except OutboxError as exc:
        return await _keys_page(request, session, outbox, code=422,
                                error=exc.message + (f": {exc.hint}" if exc.hint else ""))
    return await _keys_page(request, session, outbox, created=made.key,
                            created_name=made.record.name)


@router.post("/keys/{name}/revoke")
async def revoke_key(name: str, session: Admin, outbox: Service) -> Response:
    await outbox.keys.revoke(name)
    notice = f"API key {name} revoked: requests with it are refused from now on."
    return notices.redirect("/ui/keys", notice, session)
