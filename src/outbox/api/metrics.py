"""Prometheus metrics at /metrics, one registry per app, and the request
middleware that gives every request an id and counts it.

    outbox_queue_messages{status}                  messages by status (read at scrape time)
    outbox_oldest_pending_age_seconds              age of the oldest queued or deferred message
    outbox_relay_state{relay}                      0 ok, 1 deferring, 2 needs attention
                                                   (from recent attempts and the relay's mark)
    outbox_relay_governor{relay,state}             1 for the relay's state: open, backing_off,
                                                   probing or throttled (core.governor)
    outbox_relay_session_limit{relay}              sessions at once the relay is allowed now
    outbox_relay_backoff_seconds{relay}            until the relay's next probe (0: none)
    outbox_deliveries_total{relay,result}          recipient results (serve's worker, or its
                                                   delivery processes: [delivery] processes)
    outbox_attempt_duration_seconds{relay}         attempt latency (the same)
    outbox_api_requests_total{method,route,code}   by route template, never the raw path

    outbox_loop_errors_total{loop}                 errors a background loop backed off from
    outbox_gc_frozen_objects                       start-up objects full collections skip
                                                   (runtime/heap.py; 0 before start-up ends)

Queue gauges and relay states come from the health snapshot (the same reading
the alert engine, `outbox doctor` and `outbox relay ls` use), so they cover
every worker; the delivery, webhook and loop counters are serve's own added to
those of the delivery processes it started (`observability.Combined`), not
those of `outbox worker` processes started apart from it.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox.core.governor import GovernorState, State
from outbox.core.model import MessageStatus
from outbox.ids import random_hex
from outbox.observability import Combined, log_context
from outbox.service import Outbox

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
UNMATCHED = "unmatched"


class QueueGauges:
    """Gauges filled from the database when /metrics is scraped."""

    def __init__(self, outbox: Outbox, registry: CollectorRegistry) -> None:
        self.outbox = outbox
        self.depth = Gauge("outbox_queue_messages", "Messages by status", ["status"],
                           registry=registry)
        self.oldest = Gauge("outbox_oldest_pending_age_seconds",
                            "Age of the oldest queued or deferred message", registry=registry)
        self.relay_state = Gauge("outbox_relay_state", "Relay health from its attempts in "
                                 "[alerts] window: 0 ok, 1 deferring, 2 needs attention",
                                 ["relay"], registry=registry)
        self.governor = Gauge("outbox_relay_governor", "1 for the relay's delivery state "
                              "(open, backing_off, probing, throttled)", ["relay", "state"],
                              registry=registry)
        self.session_limit = Gauge("outbox_relay_session_limit", "Sessions at once the relay "
                                   "is allowed now", ["relay"], registry=registry)
        self.backoff = Gauge("outbox_relay_backoff_seconds", "Seconds until the relay's next "
                             "probe; 0 when it is not backing off", ["relay"], registry=registry)

    async def refresh(self) -> None:
        snapshot = await self.outbox.health.snapshot()
        stats = snapshot.queue
        for status in MessageStatus:
            self.depth.labels(status.value).set(stats.by_status.get(status.value, 0))
        oldest = stats.oldest_pending_at
        age = (snapshot.at - oldest).total_seconds() if oldest else 0.0
        self.oldest.set(max(age, 0.0))
        for relay in snapshot.relays:
            self.relay_state.labels(relay.name).set(int(relay.state))
            self._governed(relay.name, relay.governor, snapshot.at)

    def _governed(self, name: str, health: GovernorState, now: datetime) -> None:
        current = health.state(now)
        for state in State:
            self.governor.labels(name, state.value).set(1 if state is current else 0)
        configured = next((r.max_connections for r in self.outbox.settings.relays
                           if r.name == name), 0)
        self.session_limit.labels(name).set(health.limit or configured)
        until = health.backoff_until
        self.backoff.labels(name).set(max((until - now).total_seconds(), 0.0) if until else 0)


def install(app: FastAPI, outbox: Outbox) -> None:
    """/metrics, and the request middleware (add it last, so it sees every answer)."""
    registry = outbox.loops.registry
    gauges = QueueGauges(outbox, registry)
    requests = Counter("outbox_api_requests", "HTTP requests by method, route template and "
                       "status code", ["method", "route", "code"], registry=registry)
    app.add_middleware(ObserveRequests, requests=requests, routes=lambda: app.router.routes)
    Gauge("outbox_gc_frozen_objects", "Objects of this process that full garbage "
          "collections skip (frozen when start-up ends)",
          registry=registry).set_function(gc.get_freeze_count)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        await gauges.refresh()
        return Response(generate_latest(Combined(registry)), media_type=CONTENT_TYPE_LATEST)


class ObserveRequests:
    """Pure ASGI (no body buffering): binds `request_id` to every log line of
    the request, echoes it as X-Request-ID, and counts the answer."""

    def __init__(self, app: ASGIApp, requests: Counter,
                 routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self.requests = requests
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        status = 500  # unless an answer starts

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, observed_send)
            finally:
                self.requests.labels(scope["method"], self._route(scope), str(status)).inc()

    def _route(self, scope: Scope) -> str:
        """The matched route's template; routes are matched here when a
        middleware answered before routing (a 413)."""
        route: Any = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", UNMATCHED))
        for candidate in self.routes():
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                return str(getattr(candidate, "path", UNMATCHED))
        return UNMATCHED


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-ID when it is short and plain, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER and _SAFE_REQUEST_ID.fullmatch(value):
            return str(value.decode("ascii"))
    return random_hex(8)
