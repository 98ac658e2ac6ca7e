"""Prometheus metrics at /metrics; queue gauges are read at scrape time."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from outbox.core.model import MessageStatus
from outbox.service import Outbox


def install(app: FastAPI, outbox: Outbox) -> None:
    registry = CollectorRegistry()
    depth = Gauge("outbox_queue_messages", "Messages by status", ["status"], registry=registry)
    oldest = Gauge("outbox_oldest_pending_age_seconds",
                   "Age of the oldest queued or deferred message", registry=registry)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        stats = await outbox.stats()
        for status in MessageStatus:
            depth.labels(status.value).set(stats.by_status.get(status.value, 0))
        age = (outbox.clock() - stats.oldest_pending_at).total_seconds() \
            if stats.oldest_pending_at else 0.0
        oldest.set(max(age, 0.0))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
