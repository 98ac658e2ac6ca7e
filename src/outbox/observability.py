"""Structured logs (structlog) and the delivery metrics (prometheus-client).

Logs are JSON lines or console text, to stderr or a file. Context bound with
`structlog.contextvars` rides on every line: the worker binds `message`,
`message_id`, `attempt` and `relay` around each delivery, the API binds
`request_id` around each request.

Secrets never reach a log line: values of keys that look secret are replaced
by `***` in a processor, as a last line of defence behind not logging them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from outbox.config import LoggingSettings

SECRET_KEYS = ("password", "secret", "token", "api_key", "authorization", "key")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in list(event):
        if any(word in name.lower() for word in SECRET_KEYS) and name != "event":
            event[name] = "***"
    return event


def configure_logging(settings: LoggingSettings, stream: TextIO | None = None) -> None:
    output = stream or (open(settings.file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
                        if settings.file else sys.stderr)
    level = logging.getLevelName(settings.level.upper())
    renderer: Any = (structlog.processors.JSONRenderer() if settings.format == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(output),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(stream=output, level=max(level, logging.WARNING), force=True)


# Attempts range from a loopback sink (milliseconds) to a slow relay's DATA (minutes).
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0)


class DeliveryMetrics:
    """What the worker counts, in the registry of its process's /metrics (so
    `outbox serve` shows its own worker's deliveries; `outbox worker` has no
    /metrics and counts nothing)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.deliveries = Counter(
            "outbox_deliveries", "Recipient results of delivery attempts, by relay and result "
            "class (sent, deferred, failed, held, uncertain)", ["relay", "result"],
            registry=self.registry)
        self.attempt_seconds = Histogram(
            "outbox_attempt_duration_seconds", "Time to hand one message to one relay, "
            "session setup included", ["relay"], buckets=ATTEMPT_BUCKETS,
            registry=self.registry)

    def observe(self, relay: str, results: Mapping[str, int], seconds: float) -> None:
        for result, count in results.items():
            self.deliveries.labels(relay, result).inc(count)
        self.attempt_seconds.labels(relay).observe(seconds)
