"""The dashboard: queue depth by status, sent / deferred / failed per minute over the
last hour and per hour over the last day (inline SVG charts), relay states and active
alerts. The live part is
re-fetched by htmx every few seconds, without a page reload."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
HOURS = 24
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


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


def _floor(at: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    return datetime.fromtimestamp(at.timestamp() // seconds * seconds, UTC)


def chart(counts: dict[tuple[datetime, str], int], now: datetime, step: timedelta,
          bars: int) -> Chart:
    """`bars` bars of `step` each, the last one holding `now`, from per-minute counts."""
    start = _floor(now, step) - step * (bars - 1)
    buckets: Counter[tuple[datetime, str]] = Counter()
    for (minute, series), count in counts.items():
        buckets[(_floor(minute, step), series)] += count
    shown = tuple(Bar(at, {s: buckets[(at, s)] for s in SERIES})
                  for at in (start + step * n for n in range(bars)))
    totals = {s: sum(b.counts[s] for b in shown) for s in SERIES}
    return Chart(shown, max((b.total for b in shown), default=0), totals)


async def charts(outbox: Outbox, now: datetime) -> tuple[Chart, Chart]:
    """The last hour per minute and the last day per hour, from one query."""
    since = _floor(now, HOUR) - HOUR * (HOURS - 1)
    counts = await outbox.health.activity(since)
    return chart(counts, now, MINUTE, MINUTES), chart(counts, now, HOUR, HOURS)


async def live_context(outbox: Outbox) -> dict[str, Any]:
    now = outbox.clock()
    stats = await outbox.messages.stats()
    oldest = stats.oldest_pending_at
    alerts = await outbox.alerts.list(True)
    return {
        "depth": [(s, stats.by_status.get(s, 0)) for s in STATUSES],
        "oldest_age": str(now - oldest).split(".")[0] if oldest else "",
        **dict(zip(("chart", "day_chart"), await charts(outbox, now), strict=True)),
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
