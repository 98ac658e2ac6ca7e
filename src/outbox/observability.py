"""Structured logs (structlog): JSON lines or console, to stderr or a file.

Secrets never reach a log line: values of keys that look secret are replaced
by `***` in a processor, as a last line of defence behind not logging them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

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
