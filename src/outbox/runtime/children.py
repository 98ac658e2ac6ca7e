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
SQLite they take turns at the one writer lock), and a relay's max_connections with
two or more (`delivery.slots`, `SESSIONS_ENV`); new mail wakes them at once
(`store.sqlite_wakeup`, or LISTEN/NOTIFY on PostgreSQL). Serve makes a directory for
them: what they count (deliveries, attempt durations, loop errors) they keep in files
there, which serve's /metrics adds to its own (`observability.ChildMetrics`), and each
writes what its `/healthz` would say there every second (`report_health`), which
serve's `/healthz` repeats: 503 while a child is starting, failing, or silent. Each
child lowers its own CPU priority as it starts (`outbox.niceness`): serve's requests
come first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from outbox.config import Settings
from outbox.delivery.slots import SharedSessions
from outbox.errors import ProcessExited
from outbox.observability import MULTIPROCESS_ENV, ChildMetrics
from outbox.service import Outbox
from outbox.supervision import LoopMonitor, Loops, supervise
from outbox.worker.loop import Worker

log = structlog.get_logger("outbox.runtime")

PARENT_ENV = "OUTBOX_PARENT_PID"  # set for a child: the serve process it belongs to
HEALTH_ENV = "OUTBOX_HEALTH_FILE"  # set for a child: where it reports how it is
BACKLOG_ENV = "OUTBOX_FOR_BACKLOGS"  # "1" for children after the first (worker/loop.py)
SESSIONS_ENV = "OUTBOX_SHARED_SESSIONS"  # "<children> <child> <directory>": delivery/slots.py
HEALTHY_AFTER = 5.0  # seconds a child must stay up to end a streak of failures
STOP_MARGIN = 5.0  # seconds beyond shutdown_grace before a child is killed
SHARED_PREFIX = "outbox-delivery-"  # + serve's pid + "-": the children's metrics and health
REPORT_EVERY = 1.0  # seconds between a child's health reports (and serve's reads)
SILENT_AFTER = 15.0  # seconds without a report before serve calls a child unhealthy
STARTING = "starting"
CHILD_MARK = "pid-"  # + a child's pid: a file in the shared directory while it may run


def shared_sessions(value: str) -> SharedSessions | None:
    """`SESSIONS_ENV` as serve set it for a child; None for any other process."""
    fields = value.split(" ", 2)
    if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
        return None
    count, number, directory = fields
    return SharedSessions(Path(directory), int(count), int(number))


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which `taskset` and a
    container's cpuset set; not a CPU quota), which `[delivery] processes = "auto"`
    goes by."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class DeliveryProcesses:
    """The delivery processes of one `outbox serve`."""

    def __init__(self, settings: Settings, config: str | None, loops: Loops,
                 count: int) -> None:
        self._argv = [sys.executable, "-m", "outbox", "worker",
                      *(["--config", config] if config else [])]
        self._grace = settings.delivery.shutdown_grace.total_seconds() + STOP_MARGIN
        self._monitors = [loops.register(f"delivery process {n}") for n in range(1, count + 1)]
        _remove_orphaned_directories()
        self.directory = Path(tempfile.mkdtemp(prefix=f"{SHARED_PREFIX}{os.getpid()}-"))
        loops.registry.register(ChildMetrics(self.directory))
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(supervise(
            monitor, functools.partial(self._run_child, n, monitor), stop=self._stopping))
            for n, monitor in enumerate(self._monitors, 1)]

    async def _run_child(self, n: int, monitor: LoopMonitor) -> None:
        """Start child `n` and wait for it to end; an end nobody asked for raises."""
        health = self.directory / f"health-{n}.json"
        health.unlink(missing_ok=True)  # a previous child n's
        monitor.report(STARTING)
        process = await asyncio.create_subprocess_exec(*self._argv, env={
            **os.environ, PARENT_ENV: str(os.getpid()), HEALTH_ENV: str(health),
            MULTIPROCESS_ENV: str(self.directory), BACKLOG_ENV: "1" if n > 1 else "",
            SESSIONS_ENV: self._shared_sessions(n)})
        self._running[n] = process
        log.info("delivery process started", process=n, pid=process.pid)
        watching = asyncio.create_task(_watch_health(health, monitor))
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
            watching.cancel()
            monitor.report("")
        if not self._stopping.is_set():
            how = f"was killed by signal {-code}" if code < 0 else f"ended with exit code {code}"
            raise ProcessExited(f"delivery process {n} (pid {process.pid}) {how}")

    def _shared_sessions(self, n: int) -> str:
        """`SESSIONS_ENV` of child `n`: with two children or more, a relay's
        max_connections is theirs together."""
        count = len(self._monitors)
        return f"{count} {n} {self.directory / 'sessions'}" if count > 1 else ""

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
        shutil.rmtree(self.directory, ignore_errors=True)


async def _watch_health(path: Path, monitor: LoopMonitor) -> None:
    """In serve: what child's report at `path` says, on `monitor`, every second."""
    while True:
        await asyncio.sleep(REPORT_EVERY)
        monitor.report(read_health(path, time.time()))


def read_health(path: Path, now: float) -> str:
    """A child's problems in one line; empty when it is well."""
    try:
        age = now - path.stat().st_mtime
        problems = json.loads(path.read_text())["problems"]
    except FileNotFoundError:
        return STARTING  # no report yet
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its health report cannot be read: {exc}"
    if age > SILENT_AFTER:
        return f"has not reported for {age:.0f}s (hung or stopped?)"
    return "; ".join(str(problem) for problem in problems)


async def report_health(outbox: Outbox, path: Path, ready: asyncio.Event) -> None:
    """In a child: what its `/healthz` would say, written to `path` every second once
    `ready` (its worker has recovered and claims: until then serve says "starting")."""
    await ready.wait()
    written = path.with_name(path.name + ".new")
    could_write = True
    while True:
        try:
            problems = list((await outbox.health.liveness()).problems)
        except Exception as exc:
            problems = [f"its health check failed: {exc}"]
        try:
            written.write_text(json.dumps({"problems": problems}))
            written.replace(path)  # serve never reads half a report
            could_write = True
        except OSError as exc:  # serve's directory gone: serve is, and the parent watch ends us
            if could_write:
                log.warning("cannot write the health report for serve", path=str(path),
                            error=str(exc))
            could_write = False
        await asyncio.sleep(REPORT_EVERY)


def mark_running(health: Path) -> None:
    """In a child, first: a file naming its pid beside its health report, so that no
    serve removes the directory while the child still writes to it (after a `kill -9`
    of its serve it goes on for a second or more, finishing what it delivers)."""
    with contextlib.suppress(OSError):  # serve gone already: the parent watch ends us
        (health.parent / f"{CHILD_MARK}{os.getpid()}").touch()


def _remove_orphaned_directories() -> None:
    """What the delivery processes of serve processes that ended without removing it
    (`kill -9`) left, once those processes have ended too: metric files, health reports."""
    for directory in Path(tempfile.gettempdir()).glob(f"{SHARED_PREFIX}*-*"):
        owner = directory.name.removeprefix(SHARED_PREFIX).partition("-")[0]
        if not owner.isdigit() or process_running(int(owner)):
            continue
        children = [mark.name.removeprefix(CHILD_MARK) for mark in directory.glob(f"{CHILD_MARK}*")]
        if not any(pid.isdigit() and process_running(int(pid)) for pid in children):
            shutil.rmtree(directory, ignore_errors=True)


def process_running(pid: int) -> bool:
    """Whether process `pid` runs. A zombie has ended: where PID 1 does not reap (some
    containers), a dead serve's children stay zombies, and would keep its directory."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][:1] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


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
