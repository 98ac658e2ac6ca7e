"""`[delivery] processes`: the delivery of `outbox serve` in processes of its own.

With `processes = N`, serve delivers nothing itself (its core is left to HTTP,
JSON and MIME) and runs N `outbox worker` processes with its own configuration:
the same `--config`, environment and working directory. Each is watched like a
loop (`supervision`): one that ends by itself is logged, counted, and started
again after a back-off, and `/healthz` fails while one is down. Each child
watches its parent (`PARENT_ENV`): when serve is gone, even by `kill -9`, the
child stops as it would on SIGTERM. A stop sends SIGTERM to each and waits
`shutdown_grace` (and a little more), then kills what is left.

The children share the database as any workers do (claims never overlap; on
SQLite they take turns at the one writer lock), and new mail wakes them at once
(`store.sqlite_wakeup`, or LISTEN/NOTIFY on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
from collections.abc import Callable

import structlog

from outbox.config import Settings
from outbox.errors import ProcessExited
from outbox.supervision import LoopMonitor, Loops, supervise
from outbox.worker.loop import Worker

log = structlog.get_logger("outbox.runtime")

PARENT_ENV = "OUTBOX_PARENT_PID"  # set for a child: the serve process it belongs to
HEALTHY_AFTER = 5.0  # seconds a child must stay up to end a streak of failures
STOP_MARGIN = 5.0  # seconds beyond shutdown_grace before a child is killed


class DeliveryProcesses:
    """The delivery processes of one `outbox serve`."""

    def __init__(self, settings: Settings, config: str | None, loops: Loops) -> None:
        self._argv = [sys.executable, "-m", "outbox", "worker",
                      *(["--config", config] if config else [])]
        self._grace = settings.delivery.shutdown_grace.total_seconds() + STOP_MARGIN
        self._monitors = [loops.register(f"delivery process {n}")
                          for n in range(1, settings.delivery.processes + 1)]
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(supervise(
            monitor, functools.partial(self._run_child, n, monitor), stop=self._stopping))
            for n, monitor in enumerate(self._monitors, 1)]

    async def _run_child(self, n: int, monitor: LoopMonitor) -> None:
        """Start child `n` and wait for it to end; an end nobody asked for raises."""
        process = await asyncio.create_subprocess_exec(
            *self._argv, env={**os.environ, PARENT_ENV: str(os.getpid())})
        self._running[n] = process
        log.info("delivery process started", process=n, pid=process.pid)
        try:
            ended = asyncio.ensure_future(process.wait())
            done, _ = await asyncio.wait({ended}, timeout=HEALTHY_AFTER)
            if not done:
                monitor.succeeded()  # up for a while: a streak of failures is over
            code = await ended
        except BaseException:
            _signal(process, kill=True)
            raise
        finally:
            self._running.pop(n, None)
        if not self._stopping.is_set():
            how = f"was killed by signal {-code}" if code < 0 else f"ended with exit code {code}"
            raise ProcessExited(f"delivery process {n} (pid {process.pid}) {how}")

    @property
    def described(self) -> dict[str, object]:
        return {"delivery_processes": len(self._monitors)}

    def stop(self) -> None:
        """SIGTERM to every child (`finished` waits for them)."""
        self._stopping.set()
        for process in list(self._running.values()):
            _signal(process)

    async def finished(self) -> None:
        """Wait for the children to stop; SIGKILL after the grace."""
        self.stop()
        if not self._tasks:
            return
        _, late = await asyncio.wait(self._tasks, timeout=self._grace)
        for process in list(self._running.values()):
            log.warning("delivery process did not stop in time: killed", pid=process.pid)
            _signal(process, kill=True)
        await asyncio.gather(*late, return_exceptions=True)


def _signal(process: asyncio.subprocess.Process, *, kill: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill() if kill else process.terminate()


async def watch_parent(parent: int, stop: Callable[[], None], interval: float = 1.0) -> None:
    """In a child: call `stop` once the serve process that started it is gone."""
    while os.getppid() == parent:
        await asyncio.sleep(interval)
    log.warning("outbox serve that started this delivery process is gone: stopping",
                parent=parent)
    stop()


class InProcessDelivery:
    """`processes = 0`: serve's own worker, as `DeliveryProcesses` is driven."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._task = asyncio.create_task(worker.run())

    @property
    def described(self) -> dict[str, object]:
        return {"owner": self.worker.owner}

    def stop(self) -> None:
        self.worker.stop()

    async def finished(self) -> None:
        await self._task
