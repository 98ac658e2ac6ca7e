"""GET /v1/alerts: relay and queue alerts raised by the alert engine (`outbox.alerts`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from outbox.api.auth import Principal, require
from outbox.core import guidance as catalogue
from outbox.service import Outbox
from outbox.store.base import Alert
from outbox.views.models import GuidanceOut
from outbox.views.render import guidance_view, iso

router = APIRouter(prefix="/v1")
Reader = Annotated[Principal, Depends(require("read"))]


class AlertOut(BaseModel):
    key: str = Field(description="what the alert is about, e.g. relay.default.failure_rate")
    severity: str
    title: str
    detail: str
    active: bool
    raised_at: str
    cleared_at: str | None
    guidance: str
    guidance_detail: GuidanceOut


class AlertList(BaseModel):
    alerts: list[AlertOut]


def alert_view(alert: Alert) -> AlertOut:
    g = catalogue.describe(alert.guidance)
    return AlertOut(key=alert.key, severity=alert.severity, title=alert.title,
                    detail=alert.detail, active=alert.cleared_at is None,
                    raised_at=iso(alert.raised_at) or "", cleared_at=iso(alert.cleared_at),
                    guidance=g.one_line(),
                    guidance_detail=guidance_view(g))


@router.get("/alerts", response_model=AlertList)
async def list_alerts(request: Request, _: Reader,
                      active: Annotated[bool, Query(description="only alerts not cleared")]
                      = False) -> AlertList:
    """Alerts, newest first: active ones and (without ?active=true) recently cleared ones."""
    outbox: Outbox = request.app.state.outbox
    alerts = await outbox.alerts.list(active)
    return AlertList(alerts=[alert_view(a) for a in alerts])
