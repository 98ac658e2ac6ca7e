"""Structured logs (structlog) and the delivery metrics (prometheus-client).

Logs are JSON lines or console text, to stderr or a file. Context bound with
`log_context` rides on every line: the worker binds `message`, `message_id`,
`attempt` and `relay` around each delivery, the API binds `request_id` around
each request.

Secrets never reach a log line: values of keys that look secret are replaced
by `***` in a processor, as a last line of defence behind not logging them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from contextvars import ContextVar
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Sample

from outbox.config import LoggingSettings
from outbox.errors import ConfigError

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

log = structlog.get_logger("outbox.observability")

# What Outbox reports is these logs and metrics. FastAPI's own OpenTelemetry spans,
# metrics and logs (FastAPI 0.142 and later) are off, in the API and the UI: Outbox
# does not offer them, and with them on FastAPI asked OpenTelemetry for its providers
# on every request, 2.5 % of serve's event loop on `POST /v1/messages` (py-spy over
# `bench/cpu_split.py --path http-lean`, issue 15).
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

SECRET_KEYS = ("password", "secret", "token", "api_key", "authorization", "key")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in list(event):
        if _looks_secret(name):
            event[name] = "***"
    return event


@lru_cache(maxsize=1024)
def _looks_secret(name: str) -> bool:
    """Remembered per key: a line's keys are the same few names again and again, and
    testing each against every word cost a delivery's log line a fifth of its time."""
    return name != "event" and any(word in name.lower() for word in SECRET_KEYS)


def _json_value(value: object) -> str:
    """A value JSON has no type for: a time as ISO 8601 (as the lines' own timestamp),
    anything else as its repr (structlog's own fallback)."""
    return value.isoformat() if isinstance(value, datetime) else repr(value)


# What `log_context` has bound in this task, merged into each of its lines by `_merge_bound`.
# One variable holding one mapping, not structlog's variable per key, whose
# `merge_contextvars` copies and walks the whole context on every line.
_BOUND: ContextVar[Mapping[str, Any]] = ContextVar("outbox_log_context",
                                                   default=MappingProxyType({}))


def bound() -> dict[str, Any]:
    """What the lines logged here would carry from `log_context`."""
    return dict(_BOUND.get())


class log_context:  # lower case: used like structlog's bound_contextvars
    """`values` on every log line inside, then what was bound before, in this task
    (a context variable: tasks bound at once keep their own)."""

    __slots__ = ("_token", "_values")

    def __init__(self, **values: Any) -> None:
        self._values = values

    def __enter__(self) -> None:
        self._token = _BOUND.set({**_BOUND.get(), **self._values})

    def __exit__(self, *_: object) -> None:
        _BOUND.reset(self._token)


def _merge_bound(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The values bound around the call, under what the call itself names."""
    for name, value in _BOUND.get().items():
        event.setdefault(name, value)
    return event


def configure_logging(settings: LoggingSettings, stream: TextIO | None = None, *,
                      history: str = "") -> None:
    """Log lines to `stream`, else [logging] file, else stderr and, when `history` names a
    file, a rotating copy there (what `outbox support-bundle` reads)."""
    output: Any = stream or (_open_log_file(settings.file) if settings.file else sys.stderr)
    if history and stream is None and not settings.file:
        output = _Tee(output, RotatingLog(Path(history)))
    level = logging.getLevelName(settings.level.upper())
    renderer: Any = (structlog.processors.JSONRenderer(default=_json_value)
                     if settings.format == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            _merge_bound,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # A line and its newline in one write (print() makes two, each through the
        # rotating copy's size check).
        logger_factory=structlog.WriteLoggerFactory(output),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(stream=output, level=max(level, logging.WARNING), force=True)


class RotatingLog:
    """An append-only log file that is renamed to `.1` (`.1` to `.2`) past `max_bytes`.
    A file that does not exist yet is made at the first line, so that a command that logs
    nothing (`outbox status` where there is no database) leaves nothing behind; whether it
    could be made is checked at once, so a path that cannot be written is still refused
    at start.

    Several processes append to one such file (serve, its delivery processes, each CLI
    command): the size is the file's, not what this one wrote, and a file another
    process has rotated away already is left alone (this one moves to the new file)."""

    def __init__(self, path: Path, max_bytes: int = 10_000_000, backups: int = 2) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._handle: TextIO | None = None
        if path.exists():
            self._open()
        else:
            _refuse_unwritable(path)

    def write(self, text: str) -> int:
        if self._handle is None:
            self._open()
        else:
            size = os.fstat(self._handle.fileno()).st_size  # lines are flushed as written
            if size and size + len(text.encode()) > self.max_bytes:
                self._rotate()
        assert self._handle is not None
        return self._handle.write(text)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def _open(self) -> None:
        self._handle = _open_log_file(str(self.path))

    def _rotate(self) -> None:
        assert self._handle is not None
        rotated_by_another = not self._still_at_path(self._handle)
        self._handle.close()
        if not rotated_by_another:
            for index in range(self.backups, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                newer = self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 \
                    else self.path
                if newer.exists():
                    newer.replace(older)
        self._open()

    def _still_at_path(self, handle: TextIO) -> bool:
        try:
            named, opened = os.stat(self.path), os.fstat(handle.fileno())
        except FileNotFoundError:
            return False
        return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


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
    """What the worker counts, in the registry of its process's /metrics: `outbox serve`
    shows its own worker's deliveries and those of its delivery processes (they count in
    files, `ChildMetrics`); a separate `outbox worker` has no /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._warned = False
        self.deliveries = Counter(
            "outbox_deliveries", "Recipient results of delivery attempts, by relay and result "
            "class (sent, deferred, failed, held, uncertain)", ["relay", "result"],
            registry=self.registry)
        self.attempt_seconds = Histogram(
            "outbox_attempt_duration_seconds", "Time to hand one message to one relay, "
            "session setup included", ["relay"], buckets=ATTEMPT_BUCKETS,
            registry=self.registry)

    def observe(self, relay: str, results: Mapping[str, int], seconds: float) -> None:
        try:
            for result, count in results.items():
                self.deliveries.labels(relay, result).inc(count)
            self.attempt_seconds.labels(relay).observe(seconds)
        except OSError as exc:  # a delivery process's metric files gone (ChildMetrics)
            if not self._warned:
                self._warned = True
                log.warning("cannot count deliveries in /metrics; delivering on",
                            error=str(exc))


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client as it is imported


class ChildMetrics:
    """The metrics of child processes started with `MULTIPROCESS_ENV` naming `directory`:
    prometheus-client keeps each metric of theirs in a file per process there, so what a
    child counted stays counted after it ends (a restart does not reset the sums)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        files = [str(path) for path in self.directory.glob("*.db")]
        return MultiProcessCollector.merge(files, accumulate=True) if files else []


class Combined:
    """A registry as /metrics shows it: families of the same name (serve's own and
    `ChildMetrics`') added up sample by sample, since Prometheus wants each family once.
    A `_created` timestamp is the earliest."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], Sample]] = {}
        for family in self.registry.collect():
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type,
                                               family.unit)
                values[family.name] = {}
            samples = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                known = samples.get(key)
                if known is None:
                    samples[key] = sample
                else:
                    total = (min(known.value, sample.value) if sample.name.endswith("_created")
                             else known.value + sample.value)
                    samples[key] = known._replace(value=total)
        for name, family in families.items():
            family.samples = list(values[name].values())
        return families.values()


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
