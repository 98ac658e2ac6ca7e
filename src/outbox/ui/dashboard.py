"""The dashboard: queue depth by status, the last hour's sent / deferred / failed per
minute (an inline SVG chart), relay states and active alerts. The live part is
re-fetched by htmx every few seconds, without a page reload."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from outbox.core import guidance as catalogue
from outbox.service import Outbox
from outbox.ui.render import page, templates
from outbox.ui.session import Service, Viewer

router = APIRouter()
STATUSES = ("queued", "sending", "deferred", "held", "sent", "partially_sent", "failed",
            "cancelled")
SERIES = ("sent", "deferred", "failed")
MINUTES = 60


@dataclass(frozen=True, slots=True)
class Bar:
    minute: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]
    peak: int
    totals: dict[str, int]

    def height(self, count: int, full: float = 120.0) -> float:
        return round(full * count / self.peak, 1) if self.peak else 0.0


async def chart(outbox: Outbox, now: datetime) -> Chart:
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    counts = await outbox.health.activity(start)
    bars = tuple(Bar(minute, {s: counts.get((minute, s), 0) for s in SERIES})
                 for minute in (start + timedelta(minutes=n) for n in range(MINUTES)))
    totals = {s: sum(b.counts[s] for b in bars) for s in SERIES}
    return Chart(bars, max((b.total for b in bars), default=0), totals)


async def live_context(outbox: Outbox) -> dict[str, Any]:
    now = outbox.clock()
    stats = await outbox.messages.stats()
    oldest = stats.oldest_pending_at
    alerts = await outbox.alerts.list(True)
    return {
        "depth": [(s, stats.by_status.get(s, 0)) for s in STATUSES],
        "oldest_age": str(now - oldest).split(".")[0] if oldest else "",
        "chart": await chart(outbox, now),
        "relays": await outbox.relays.statuses(),
        "alerts": [(a, catalogue.describe(a.guidance)) for a in alerts],
        "now": now,
    }


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, session: Viewer, outbox: Service) -> HTMLResponse:
    return page(request, "dashboard.html", session, **await live_context(outbox))


@router.get("/dashboard/live", response_class=HTMLResponse)
async def live(request: Request, session: Viewer, outbox: Service) -> HTMLResponse:
    return templates.TemplateResponse(request, "_live.html",
                                      {"session": session, **await live_context(outbox)})
