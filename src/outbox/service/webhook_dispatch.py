"""The webhook dispatcher: delivers what the store recorded, at least once.

Each round claims the due deliveries of up to the free request slots
(`[webhooks] concurrency`), one endpoint's events per request (a batch for an
endpoint with `batch_size` > 1), posts each request signed (SPEC §2), and records
every result: delivered, due again after a back-off (`core.webhooks
.DeliveryPolicy`, doubling from first_delay up to max_delay), or given up once the
event is older than max_age. A claim hides its deliveries for `lease` seconds, so
those of a process killed mid-request are delivered again after it; retries and
redeliveries carry the same event id, so receivers can drop duplicates. An
endpoint whose requests all failed, `disable_after_failures` in a row over
`disable_after`, is disabled (the alert engine raises `webhook.<id>.disabled`).

The loop is supervised (outbox.supervision); /healthz reports it as `webhooks`, a
warning while it fails (mail is still delivered meanwhile).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import structlog
from prometheus_client import Counter

from outbox.clock import utcnow
from outbox.config import Settings
from outbox.core import signing
from outbox.core import webhooks as rules
from outbox.core.alerting import duration
from outbox.delivery.webhook_http import PostResult, WebhookClient
from outbox.errors import OutboxError
from outbox.service.webhooks import Webhooks, delivery_policy
from outbox.store.base import Store
from outbox.store.webhook_values import DeliveryResult, DueDelivery, WebhookEndpoint
from outbox.supervision import Loops, supervise

log = structlog.get_logger("outbox.webhooks")

RECORD_TRIES = 3  # a result the store cannot take is retried; then its lease redelivers
STOP_GRACE = 3.0  # seconds the requests in flight get at a stop


class Dispatcher:
    def __init__(self, settings: Settings, store: Store, webhooks: Webhooks, loops: Loops, *,
                 clock: Callable[[], datetime] = utcnow, rng: random.Random | None = None,
                 client: WebhookClient | None = None) -> None:
        w = settings.webhooks
        self.store = store
        self.webhooks = webhooks
        self.loops = loops
        self.policy = delivery_policy(settings)
        self.concurrency = w.concurrency
        self.max_batch = w.max_batch
        self.poll_interval = w.poll_interval.total_seconds()
        # Past the whole exchange (2 x timeout, see WebhookClient) and the recording.
        self.lease = timedelta(seconds=w.timeout.total_seconds() * 3 + 5)
        self._clock = clock
        self._rng = rng or random.Random()
        self._client = client or WebhookClient(webhooks.allowed, w.timeout.total_seconds())
        self._secrets: dict[str, tuple[str, str]] = {}  # endpoint id → (sealed, plain)
        self._inflight: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._requests = _counter(loops)

    async def run(self) -> None:
        """Deliver until `stop()`; then give the requests in flight `STOP_GRACE`
        seconds. Those cut short are delivered again after their lease."""
        # Not critical: mail is delivered without it; /healthz lists it as a warning.
        monitor = self.loops.register("webhooks", critical=False)
        try:
            await supervise(monitor, self.round, stop=self._stopping)
        finally:
            if self._inflight:
                _, late = await asyncio.wait(set(self._inflight), timeout=STOP_GRACE)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()
        self._slot_free.set()

    async def round(self) -> float | None:
        """Claim and start what is due; returns how long to wait when nothing was."""
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            self._slot_free.clear()
            await self._slot_free.wait()
            return None
        now = self._clock()
        requests = await self.store.webhooks.claim_deliveries(
            now, now + self.lease, secrets.token_hex(8), free, self.max_batch)
        if not requests:
            return self.poll_interval
        endpoints = {e.id: e for e in await self.store.webhooks.list_endpoints()}
        for request in requests:
            endpoint = endpoints.get(request[0].endpoint_id)
            if endpoint is not None:  # removed meanwhile: its deliveries went with it
                self._start(endpoint, request)
        return None

    async def drain(self) -> None:
        """Wait for the requests in flight (tests, shutdown)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    def _start(self, endpoint: WebhookEndpoint, request: tuple[DueDelivery, ...]) -> None:
        task = asyncio.create_task(self._deliver(endpoint, request))
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery failed inside Outbox; its lease will redeliver it",
                      error=str(task.exception()))

    async def _deliver(self, endpoint: WebhookEndpoint, request: tuple[DueDelivery, ...]
                       ) -> None:
        now = self._clock()
        expired = [d for d in request if now >= d.created_at + self.policy.max_age]
        live = [d for d in request if d not in expired]
        results = [DeliveryResult(d.id, d.token, False, now,
                                  error="given up: older than [webhooks] max_age")
                   for d in expired]
        if live:
            outcome = await self._post(endpoint, live)
            self._requests.labels("delivered" if outcome.ok else "failed").inc()
            results += self._results(live, outcome)
        await self._record(endpoint, results)

    async def _post(self, endpoint: WebhookEndpoint, live: Sequence[DueDelivery]) -> PostResult:
        payloads = [rules.event_payload(d.facts) for d in live]
        body = json.dumps(rules.request_body(payloads, batched=endpoint.batch_size > 1),
                          separators=(",", ":"), default=str).encode()
        timestamp = int(time.time())
        try:
            secret = self._secret(endpoint)
        except OutboxError as exc:
            return PostResult(False, error=exc.message)
        headers = {"Content-Type": "application/json",
                   "Outbox-Event-Id": ",".join(p["id"] for p in payloads),
                   "Outbox-Timestamp": str(timestamp),
                   "Outbox-Signature": signing.event_signature(secret, timestamp, body)}
        return await self._client.post(endpoint.url, body, headers)

    def _results(self, live: Sequence[DueDelivery], outcome: PostResult) -> list[DeliveryResult]:
        at = self._clock()
        return [DeliveryResult(
            d.id, d.token, outcome.ok, at, outcome.status, outcome.error,
            None if outcome.ok else self.policy.next_try(d.attempts + 1, d.created_at, at,
                                                         self._rng))
            for d in live]

    def _secret(self, endpoint: WebhookEndpoint) -> str:
        cached = self._secrets.get(endpoint.id)
        if cached is None or cached[0] != endpoint.secret:
            plain = self.webhooks.box().open(endpoint.secret,
                                             f"the secret of webhook endpoint {endpoint.id}")
            cached = self._secrets[endpoint.id] = (endpoint.secret, plain)
        return cached[1]

    async def _record(self, endpoint: WebhookEndpoint, results: list[DeliveryResult]) -> None:
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                streaks = await self.store.webhooks.record_deliveries(results)
                break
            except OutboxError as exc:
                if attempt == RECORD_TRIES:
                    log.warning("webhook results not recorded; the events will be delivered "
                                "again", endpoint=endpoint.id, error=exc.one_line())
                    return
                await asyncio.sleep(0.5 * attempt)
        for streak in streaks:
            if self.policy.should_disable(streak.failures, streak.failing_since, self._clock()):
                await self._disable(endpoint, streak.failures)

    async def _disable(self, endpoint: WebhookEndpoint, failures: int) -> None:
        since = duration(self.policy.disable_after)
        reason = f"{failures} requests in a row failed over more than {since}"
        if await self.store.webhooks.set_endpoint_enabled(endpoint.id, False, reason,
                                                          self._clock()):
            log.warning("webhook endpoint disabled after failing", endpoint=endpoint.id,
                        url=endpoint.url, failures=failures,
                        fix=f"fix the receiver, then `outbox webhooks enable {endpoint.id}`")

    async def aclose(self) -> None:
        await self._client.aclose()


def _counter(loops: Loops) -> Counter:
    return Counter("outbox_webhook_requests", "Event webhook requests by result",
                   ["result"], registry=loops.registry)
