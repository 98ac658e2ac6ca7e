"""Structured logs (structlog) and the delivery metrics (prometheus-client).

Logs are JSON lines or console text, to stderr or a file. Context bound with
`structlog.contextvars` rides on every line: the worker binds `message`,
`message_id`, `attempt` and `relay` around each delivery, the API binds
`request_id` around each request.

Secrets never reach a log line: values of keys that look secret are replaced
by `***` in a processor, as a last line of defence behind not logging them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from outbox.config import LoggingSettings
from outbox.errors import ConfigError

SECRET_KEYS = ("password", "secret", "token", "api_key", "authorization", "key")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in list(event):
        if any(word in name.lower() for word in SECRET_KEYS) and name != "event":
            event[name] = "***"
    return event


def configure_logging(settings: LoggingSettings, stream: TextIO | None = None, *,
                      history: str = "") -> None:
    """Log lines to `stream`, else [logging] file, else stderr and, when `history` names a
    file, a rotating copy there (what `outbox support-bundle` reads)."""
    output: Any = stream or (_open_log_file(settings.file) if settings.file else sys.stderr)
    if history and stream is None and not settings.file:
        output = _Tee(output, RotatingLog(Path(history)))
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


class RotatingLog:
    """An append-only log file that is renamed to `.1` (`.1` to `.2`) past `max_bytes`.
    A file that does not exist yet is made at the first line, so that a command that logs
    nothing (`outbox status` where there is no database) leaves nothing behind; whether it
    could be made is checked at once, so a path that cannot be written is still refused
    at start."""

    def __init__(self, path: Path, max_bytes: int = 10_000_000, backups: int = 2) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._handle: TextIO | None = None
        self._size = 0
        if path.exists():
            self._open()
        else:
            _refuse_unwritable(path)

    def write(self, text: str) -> int:
        if self._handle is None:
            self._open()
        elif self._size + len(text) > self.max_bytes and self._size:
            self._rotate()
        assert self._handle is not None
        self._size += len(text.encode())
        return self._handle.write(text)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def _open(self) -> None:
        self._handle = _open_log_file(str(self.path))
        self._size = self._handle.tell()

    def _rotate(self) -> None:
        assert self._handle is not None
        self._handle.close()
        for index in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            newer = self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 \
                else self.path
            if newer.exists():
                newer.replace(older)
        self._open()


class _Tee:
    """Writes every log line to two streams (stderr and the rotating copy). The copy is
    only for support bundles: when it cannot be written (its directory gone, the disk
    full), it stops with one line on the first stream, and the log call that hit it
    returns as usual; a loop that logs must never end because of it."""

    def __init__(self, first: TextIO, second: RotatingLog) -> None:
        self.first, self.second = first, second
        self._copying = True
        self._json = True  # the format of the lines seen, for the line saying it stopped

    def write(self, text: str) -> int:
        self._json = text.startswith("{")
        if self._copying:
            self._copy(lambda: self.second.write(text))
        return self.first.write(text)

    def flush(self) -> None:
        self.first.flush()
        if self._copying:
            self._copy(self.second.flush)

    def _copy(self, step: Callable[[], object]) -> None:
        try:
            step()
        except (OSError, ConfigError) as exc:
            self._copying = False
            why = f"the log copy {self.second.path} stopped: {exc}"
            self.first.write((json.dumps({"event": why, "level": "warning"}) if self._json
                              else f"[warning  ] {why}") + "\n")


def _open_log_file(path: str) -> TextIO:
    """The log file for appending, its directory created; a ConfigError naming it if not."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", buffering=1, encoding="utf-8")
    except OSError as exc:
        raise _unwritable(path, exc.strerror or str(exc)) from None


def _refuse_unwritable(path: Path) -> None:
    """The ConfigError `_open_log_file` would raise, without making anything: the
    nearest existing directory on the way must let this process make the rest."""
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise _unwritable(str(path), f"{existing} is not a writable directory")


def _unwritable(path: str, why: str) -> ConfigError:
    return ConfigError(f"logging.file: cannot write {path}: {why}",
                       hint="give a writable path, or leave it empty to log to stderr")


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


class Throttle:
    """At most `burst` log lines per `period` seconds for one kind of trouble; the
    lines held back are counted and reported on the next line let through.

        if (held := throttle.admit(now)) is not None:
            log.error("...", suppressed=held)
    """

    def __init__(self, burst: int = 10, period: float = 1.0) -> None:
        self.burst = burst
        self.period = period
        self._window_start = float("-inf")
        self._in_window = 0
        self._held = 0

    def admit(self, now: float) -> int | None:
        """None: stay silent; else log, saying how many lines were held back since."""
        if now - self._window_start >= self.period:
            self._window_start, self._in_window = now, 0
        if self._in_window >= self.burst:
            self._held += 1
            return None
        self._in_window += 1
        held, self._held = self._held, 0
        return held
