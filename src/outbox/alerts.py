"""The alert engine: checks the `core.alerting` rules every `[alerts]
evaluate_every` inside `outbox serve`, keeps alerts in the store, logs each
change and posts it to `[alerts] webhook_url`, signed.

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
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from outbox import __version__
from outbox.clock import utcnow
from outbox.config import AlertSettings
from outbox.core import alerting
from outbox.core import guidance as catalogue
from outbox.core.model import MessageStatus
from outbox.store.base import Alert, Store

log = structlog.get_logger("outbox.alerts")

SIGNATURE_HEADER = "Outbox-Signature"
RAISED = "alert.raised"
CLEARED = "alert.cleared"
WEBHOOK_TRIES = 3
REPLAY_TOLERANCE = 300  # seconds


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The Outbox-Signature header value for `body` sent at `timestamp`."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: float,
           tolerance: float = REPLAY_TOLERANCE) -> bool:
    """True when `header` signs `body` with `secret` and is recent enough."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not parts.get("t", "").isdigit() or "v1" not in parts:
        return False
    timestamp = int(parts["t"])
    fresh = abs(now - timestamp) <= tolerance
    return fresh and hmac.compare_digest(parts["v1"], _mac(secret, timestamp, body))


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def thresholds(settings: AlertSettings) -> alerting.Thresholds:
    return alerting.Thresholds(settings.failure_ratio, settings.window, settings.min_attempts,
                               settings.oldest_queued_age, settings.held_count)


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
    def __init__(self, store: Store, settings: AlertSettings, *,
                 clock: Callable[[], datetime] = utcnow, webhook: Webhook | None = None) -> None:
        self.store = store
        self.settings = settings
        self.thresholds = thresholds(settings)
        self._clock = clock
        self._webhook = webhook or (Webhook(settings) if settings.webhook_url else None)

    async def run(self) -> None:
        """Evaluate until cancelled; a failed round is logged and retried next time."""
        while True:
            try:
                await self.evaluate()
            except Exception:
                log.exception("alert evaluation failed; trying again next round")
            await asyncio.sleep(self.settings.evaluate_every.total_seconds())

    async def evaluate(self) -> alerting.Changes:
        """One round: raise what the rules want, clear what they no longer want.
        Returns the changes that took effect here."""
        now = self._clock()
        wanted = alerting.evaluate(await self.snapshot(now), self.thresholds)
        active = {alert.key: alert for alert in await self.store.list_alerts(True)}
        plan = alerting.changes(wanted, active)
        raised = [spec for spec in plan.to_raise if spec.key not in active
                  and await self.store.raise_alert(spec.key, spec.severity.value, spec.title,
                                                   spec.detail, spec.guidance, now)]
        cleared = [key for key in plan.to_clear if await self.store.clear_alert(key, now)]
        for spec in raised:
            await self._announce_raised(spec, now)
        for key in cleared:
            await self._announce_cleared(active[key], now)
        return alerting.Changes(tuple(raised), tuple(cleared))

    async def snapshot(self, now: datetime) -> alerting.Snapshot:
        outcomes = await self.store.relay_outcomes(now - self.thresholds.window)
        stats = await self.store.stats()
        marked = {s.relay: (s.reason, s.guidance) for s in await self.store.relay_states()
                  if s.needs_attention}
        return alerting.Snapshot(now, outcomes, stats.oldest_pending_at,
                                 stats.by_status.get(MessageStatus.HELD.value, 0), marked)

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
