"""Loops that survive what they talk to (STYLE principle 13).

Every long-running loop of a process (claiming, lease renewal, recovery,
attachment clean-up, alerts, directory sync ...) runs under `supervise`: an
exception from one round is logged once per streak (not once per round),
counted in `outbox_loop_errors_total{loop}`, and followed by a back-off with
jitter (0.5 s doubling to 30 s); the next good round ends the streak. A
`LoopMonitor` keeps each loop's state for `/healthz`: running or not, and
failing since when, with what.

    monitor = loops.register("claim")
    task = asyncio.create_task(supervise(monitor, claim_once, stop=stopping))

A loop is critical (the default) when the process cannot do its job without it:
`/healthz` answers 503 while a critical loop fails or is not running; a
failing non-critical loop (attachment clean-up, say) is only reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Counter

log = structlog.get_logger("outbox.supervision")

FIRST_BACKOFF = 0.5  # seconds after the first failure of a streak
MAX_BACKOFF = 30.0


@dataclass(slots=True)
class LoopState:
    """What `/healthz` says about one loop."""

    name: str
    critical: bool = True
    running: bool = False
    failing_since: float | None = None  # monotonic seconds; None while healthy
    error: str = ""  # the last error of the current streak
    failures: int = 0  # in the current streak
    total_failures: int = 0
    reported: str = ""  # a problem of what the loop watches (a delivery process's report)

    @property
    def is_failing(self) -> bool:
        return self.failing_since is not None


class LoopMonitor:
    """One loop's state, kept by `supervise` and read by health checks."""

    def __init__(self, name: str, errors: Counter | None = None, *, critical: bool = True,
                 max_backoff: float = MAX_BACKOFF) -> None:
        self.state = LoopState(name, critical)
        self._errors = errors
        self._max_backoff = max_backoff

    @property
    def name(self) -> str:
        return self.state.name

    def started(self) -> None:
        self.state.running = True

    def report(self, problem: str) -> None:
        """A problem of what this loop watches (empty: none), for `/healthz`."""
        self.state.reported = problem

    def stopped(self) -> None:
        self.state.running = False

    def succeeded(self) -> None:
        if self.state.is_failing:
            log.info("loop recovered", loop=self.name, failures=self.state.failures)
        self.state.failing_since, self.state.error, self.state.failures = None, "", 0

    def failed(self, exc: BaseException) -> float:
        """Record a failure; returns how long to back off before the next round."""
        state = self.state
        state.error = _one_line(exc)
        state.failures += 1
        state.total_failures += 1
        if self._errors is not None:
            self._errors.labels(self.name).inc()
        if state.failing_since is None:
            state.failing_since = time.monotonic()
            log.error("loop failed; backing off and trying again", loop=self.name,
                      error=state.error, exc_info=exc)
        backoff = min(FIRST_BACKOFF * 2 ** min(state.failures - 1, 16), self._max_backoff)
        return backoff * random.uniform(0.8, 1.2)


class Loops:
    """The supervised loops of one process, and their error counter."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._errors = Counter("outbox_loop_errors", "Errors that interrupted a background "
                               "loop, which backed off and carried on", ["loop"],
                               registry=self.registry)
        self._monitors: dict[str, LoopMonitor] = {}

    def register(self, name: str, *, critical: bool = True,
                 max_backoff: float = MAX_BACKOFF) -> LoopMonitor:
        monitor = self._monitors.get(name)
        if monitor is None:
            monitor = self._monitors[name] = LoopMonitor(name, self._errors, critical=critical,
                                                         max_backoff=max_backoff)
        return monitor

    def __iter__(self) -> Iterator[LoopMonitor]:
        return iter(list(self._monitors.values()))


async def supervise(monitor: LoopMonitor, round: Callable[[], Awaitable[float | None]], *,
                    stop: asyncio.Event | None = None) -> None:
    """Run `round` until `stop` is set (or the task is cancelled). A round returns
    how long to wait before the next one (None: at once); one that raises is
    logged, counted and backed off."""
    stop = stop or asyncio.Event()
    monitor.started()
    try:
        while not stop.is_set():
            try:
                pause = await round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await sleep_unless_stopped(monitor.failed(exc), stop)
                continue
            monitor.succeeded()
            if pause:
                await sleep_unless_stopped(pause, stop)
    finally:
        monitor.stopped()


async def sleep_unless_stopped(seconds: float, stop: asyncio.Event) -> None:
    """Sleep, but wake at once when the loop is asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def every(seconds: float, action: Callable[[], Awaitable[object]]) -> Callable[
        [], Awaitable[float]]:
    """A round for `supervise` that runs `action`, then waits `seconds`."""

    async def round() -> float:
        await action()
        return seconds

    return round


def _one_line(exc: BaseException) -> str:
    one_line = getattr(exc, "one_line", None)
    if callable(one_line):
        return str(one_line())
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
