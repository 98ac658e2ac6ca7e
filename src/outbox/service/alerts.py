"""The alert engine: checks the `core.alerting` rules on the health snapshot
every `[alerts] evaluate_every` inside `outbox serve`, keeps alerts in the
store, logs each change and posts it to `[alerts] webhook_url`, signed.

A webhook request is `POST webhook_url` with a JSON body

    {"type": "alert.raised" | "alert.cleared", "sent_at": "...",
     "alert": {"key", "severity", "title", "detail", "guidance", "guidance_key",
               "raised_at", "cleared_at"}}

and the header `Outbox-Signature: t=<unix seconds>,v1=<hex>`, where `v1` is
HMAC-SHA256 with `webhook_secret` over `<t>.<raw body>`. A receiver recomputes
it, compares in constant time, and refuses an old `t` (a replay); `verify`
does exactly that.

Several `outbox serve` nodes may share a database: the store raises or clears
an alert once, and only the node whose change took effect logs and posts it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

from outbox import __version__
from outbox.clock import utcnow
from outbox.config import AlertSettings
from outbox.core import alerting, signing
from outbox.core import guidance as catalogue
from outbox.service.health import Health
from outbox.store.base import Alert, Store
from outbox.supervision import every, supervise

if TYPE_CHECKING:
    import httpx

log = structlog.get_logger("outbox.alerts")

SIGNATURE_HEADER = "Outbox-Signature"
RAISED = "alert.raised"
CLEARED = "alert.cleared"
WEBHOOK_TRIES = 3
REPLAY_TOLERANCE = signing.REPLAY_TOLERANCE  # seconds


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The Outbox-Signature header value for `body` sent at `timestamp`."""
    return f"t={timestamp},v1={signing.mac(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: float,
           tolerance: float = REPLAY_TOLERANCE) -> bool:
    """True when `header` signs `body` with `secret` and is recent enough."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not parts.get("t", "").isdigit() or "v1" not in parts:
        return False
    timestamp = int(parts["t"])
    fresh = signing.is_fresh(timestamp, now, tolerance)
    return fresh and hmac.compare_digest(parts["v1"], signing.mac(secret, timestamp, body))


def alert_body(alert: Alert) -> dict[str, Any]:
    """An alert as JSON, with its guidance in words."""
    g = catalogue.describe(alert.guidance)
    return {"key": alert.key, "severity": alert.severity, "title": alert.title,
            "detail": alert.detail, "guidance": g.one_line(), "guidance_key": alert.guidance,
            "raised_at": _iso(alert.raised_at), "cleared_at": _iso(alert.cleared_at)}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


class Webhook:
    """Posts alert changes, signed; a few tries, then a logged warning."""

    def __init__(self, settings: AlertSettings, client: httpx.AsyncClient | None = None,
                 retry_delay: float = 1.0) -> None:
        import httpx  # only where an alert webhook is configured

        self.url = settings.webhook_url
        self._secret = settings.webhook_secret.get_secret_value()
        self._client = client or httpx.AsyncClient(
            timeout=settings.webhook_timeout.total_seconds(),
            headers={"User-Agent": f"outbox/{__version__}"})
        self._retry_delay = retry_delay

    async def post(self, event_type: str, alert: Alert, now: datetime) -> bool:
        payload = {"type": event_type, "sent_at": _iso(now), "alert": alert_body(alert)}
        body = json.dumps(payload, separators=(",", ":")).encode()
        for attempt in range(1, WEBHOOK_TRIES + 1):
            if await self._try(body):
                return True
            if attempt < WEBHOOK_TRIES:
                await asyncio.sleep(self._retry_delay * attempt)
        log.warning("alert webhook failed; the alert stays listed at /v1/alerts",
                    alert=alert.key, webhook=urlsplit(self.url).netloc, tries=WEBHOOK_TRIES)
        return False

    async def _try(self, body: bytes) -> bool:
        import httpx

        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: sign(self._secret, int(time.time()), body)}
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.info("alert webhook unreachable", webhook=urlsplit(self.url).netloc,
                     error=type(exc).__name__)
            return False
        if response.is_success:
            return True
        log.info("alert webhook refused", webhook=urlsplit(self.url).netloc,
                 status=response.status_code)
        return False

    async def aclose(self) -> None:
        await self._client.aclose()


class AlertEngine:
    """The `alerts` facet: evaluates the rules on the health snapshot (`run`,
    inside `outbox serve`) and lists the alerts it raised."""

    def __init__(self, store: Store, settings: AlertSettings, health: Health, *,
                 clock: Callable[[], datetime] = utcnow, webhook: Webhook | None = None) -> None:
        self.store = store
        self.settings = settings
        self.health = health
        self.thresholds = health.thresholds
        self._clock = clock
        self._webhook = webhook or (Webhook(settings) if settings.webhook_url else None)

    async def run(self) -> None:
        """Evaluate every `evaluate_every` until cancelled; a failed round is logged
        and retried with back-off (a supervised loop)."""
        monitor = self.health.loops.register("alerts")
        await supervise(monitor, every(self.settings.evaluate_every.total_seconds(),
                                       self.evaluate))

    async def list(self, active_only: bool) -> tuple[Alert, ...]:
        """Newest first: active ones, and recently cleared ones unless `active_only`."""
        return await self.store.alerts.list_alerts(active_only)

    async def evaluate(self) -> alerting.Changes:
        """One round: raise what the rules want, clear what they no longer want,
        bring the text of those still active up to date. Returns the changes that
        took effect here."""
        snapshot = await self.health.snapshot()
        now = snapshot.at
        wanted = alerting.evaluate(snapshot.for_alerts(), self.thresholds)
        active = {alert.key: alert for alert in await self.store.alerts.list_alerts(True)}
        plan = alerting.changes(wanted, active)
        raised = [spec for spec in plan.to_raise if spec.key not in active
                  and await self.store.alerts.raise_alert(spec.key, spec.severity.value, spec.title,
                                                          spec.detail, spec.guidance, now)]
        cleared = [key for key in plan.to_clear if await self.store.alerts.clear_alert(key, now)]
        texts = {key: (a.title, a.detail, a.guidance) for key, a in active.items()}
        for spec in alerting.stale(plan.to_raise, texts):
            await self.store.alerts.refresh_alert(spec.key, spec.title, spec.detail, spec.guidance)
        for spec in raised:
            await self._announce_raised(spec, now)
        for key in cleared:
            await self._announce_cleared(active[key], now)
        return alerting.Changes(tuple(raised), tuple(cleared))

    async def _announce_raised(self, spec: alerting.AlertSpec, now: datetime) -> None:
        log.warning("alert raised", alert=spec.key, severity=spec.severity.value,
                    title=spec.title, detail=spec.detail,
                    guidance=catalogue.describe(spec.guidance).next_step)
        alert = Alert(spec.key, spec.severity.value, spec.title, spec.detail, spec.guidance,
                      raised_at=now, cleared_at=None)
        await self._post(RAISED, alert, now)

    async def _announce_cleared(self, alert: Alert, now: datetime) -> None:
        log.info("alert cleared", alert=alert.key, title=alert.title)
        cleared = Alert(alert.key, alert.severity, alert.title, alert.detail, alert.guidance,
                        raised_at=alert.raised_at, cleared_at=now)
        await self._post(CLEARED, cleared, now)

    async def _post(self, event_type: str, alert: Alert, now: datetime) -> None:
        if self._webhook is not None:
            await self._webhook.post(event_type, alert, now)

    async def aclose(self) -> None:
        if self._webhook is not None:
            await self._webhook.aclose()
