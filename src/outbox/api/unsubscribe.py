"""One-click unsubscribe over HTTP (RFC 8058): `POST /unsubscribe/{token}` (what a
mailbox provider sends for its "unsubscribe" button, body `List-Unsubscribe=One-Click`)
suppresses the link's address; `GET` shows a page with a button that POSTs (a GET must
never unsubscribe: link scanners follow links). No API key: the signed token is the
authority. A link Outbox did not make is 404."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from outbox.service import Outbox

router = APIRouter(include_in_schema=False)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><form method="post"><p>Stop sending mail to {address}?</p>
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form></body></html>
"""
_SAFE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _outbox(request: Request) -> Outbox:
    outbox: Outbox = request.app.state.outbox
    return outbox


@router.post("/unsubscribe/{token}")
async def unsubscribe(request: Request, token: str) -> PlainTextResponse:
    address = await _outbox(request).unsubscribes.unsubscribe(token)
    return PlainTextResponse(f"{address} is unsubscribed.\n", headers=_SAFE)


@router.get("/unsubscribe/{token}")
async def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    _, address = await _outbox(request).unsubscribes.check(token)
    return HTMLResponse(PAGE.format(address=html.escape(address)), headers=_SAFE)
