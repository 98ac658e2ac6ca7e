"""Alerts and settings. Alerts (everyone signed in): the active ones with their fix,
then the history: the cleared ones among the newest 100 alerts (what `outbox.alerts`
lists, as /v1/alerts does; retention purges old cleared ones). Settings (admin only):
the effective configuration, read-only, every secret masked exactly as `outbox config
show` masks it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from outbox.config.sample import masked_config
from outbox.core import guidance as catalogue
from outbox.ui.render import page
from outbox.ui.session import Admin, Service, Viewer

router = APIRouter()


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, session: Viewer, outbox: Service) -> HTMLResponse:
    every = [(a, catalogue.describe(a.guidance)) for a in await outbox.alerts.list(False)]
    return page(request, "alerts.html", session,
                active=[(a, g) for a, g in every if a.is_active],
                history=[(a, g) for a, g in every if not a.is_active])


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request, session: Admin, outbox: Service) -> HTMLResponse:
    response = page(request, "settings.html", session, config=masked_config(outbox.settings))
    response.headers["Cache-Control"] = "no-store"
    return response
