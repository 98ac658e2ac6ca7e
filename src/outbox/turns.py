"""A large message's planning at submit runs in a process of its own, so that the
event loop and SQLite's writer thread go on serving the small requests beside it
(issue 17).

On a thread, the planning shared the interpreter's lock with the loop and the writer:
while a 1,000-recipient message was stored, a small submit's insert took 20-48 ms for
2-3 ms of CPU, waiting for the lock (a probe of each writer call during bench/abuse.py).
In a process, small submits made meanwhile wait less (bench/abuse.py, stop 30's note).

`outbox serve` starts the process in the background as it starts (other commands do
not: they plan on a thread). Until it answers (about 0.2 s here), and whenever it
is gone, the planning runs on a thread as before, and a process that ended is
replaced. Work that fails in the process runs again on the thread, which raises the
caller's error as it always did: a refused message costs its planning twice, a good
one once. The process ignores Ctrl-C (serve stops it) and ends by itself when serve
is gone, even by `kill -9`.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import structlog

from outbox.niceness import run_in_the_background

log = structlog.get_logger("outbox.planning")

T = TypeVar("T")

# Above this many recipients a message's pure work leaves the loop: below it, the
# hand-over (about 0.1 ms to a thread, more to a process) costs more than the work.
LARGE = 200
START_TIMEOUT = 30.0  # seconds for the process to answer its first call
RETRY_AFTER = 60.0  # seconds before trying again to start a process that failed to


class OffTheLoop:
    """Runs the pure work of large messages away from the event loop's interpreter."""

    def __init__(self, *, imports: tuple[str, ...] = ()) -> None:
        self._imports = imports  # modules the process loads before its first call
        self._pool: ProcessPoolExecutor | None = None
        self._pid: int | None = None
        self._starting = False
        self._failed_at = -RETRY_AFTER
        self._closed = False
        self._lock = threading.Lock()

    def in_a_process(self, size: int, *, portable: bool = True) -> bool:
        """Whether work for a message of `size` recipients would run in the process now."""
        return size > LARGE and portable and self._pool is not None

    async def run(self, size: int, work: Callable[[], T], *, portable: bool = True) -> T:
        """`work()`: here when `size` (recipients) is at most LARGE, in the planning
        process above it (or on a thread while there is none: before `start`, while it
        starts, or after it ended; or when the caller says its data is too big to copy
        over, `portable=False`). `work` must be pure and picklable (a module-level
        function, or a `functools.partial` of one with data)."""
        if size <= LARGE:
            return work()
        if self._pool is None:
            self.start()  # one that failed to start is tried again, RETRY_AFTER later
        pool = self._pool if portable else None
        if pool is not None:
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, work)
            except BrokenProcessPool:
                self._lost(pool)
            except Exception:  # raised again just below, on the thread, as callers expect
                pass
        return await asyncio.to_thread(work)

    def close(self) -> None:
        """Stop the process (it finishes the call under way); blocks until it is gone."""
        with self._lock:
            self._closed = True
            pool, self._pool, self._pid = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    @property
    def pid(self) -> int | None:
        """The planning process's id, from when it answered until it is found gone."""
        return self._pid

    def start(self) -> None:
        """Start the process in the background, if it is not running or starting (serve
        calls this at start-up, so that the first large message does not wait for it)."""
        with self._lock:
            if (self._starting or self._closed
                    or time.monotonic() - self._failed_at < RETRY_AFTER):
                return
            self._starting = True
        # Starting a process takes tens of milliseconds of this process's own work:
        # not on the loop.
        threading.Thread(target=self._open, name="outbox-planning-start", daemon=True).start()

    def _open(self) -> None:
        pool: ProcessPoolExecutor | None = None
        try:
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_in_the_process)
            pid = pool.submit(_ready, *self._imports).result(timeout=START_TIMEOUT)
        except Exception as exc:
            log.warning("could not start the planning process; large messages are "
                        "planned on a thread", error=f"{type(exc).__name__}: {exc}",
                        retry_in=RETRY_AFTER)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            with self._lock:
                self._starting, self._failed_at = False, time.monotonic()
            return
        with self._lock:
            self._starting = False
            closed = self._closed
            if not closed:
                self._pool, self._pid = pool, pid
        if closed:
            pool.shutdown(wait=True, cancel_futures=True)
        else:
            log.info("planning process started", pid=pid)

    def _lost(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            current = self._pool is pool
            if current:
                self._pool, self._pid = None, None
        if current:  # once, however many calls found it gone
            log.warning("the planning process ended; large messages are planned on a "
                        "thread until another has started")
            pool.shutdown(wait=False, cancel_futures=True)
            self.start()


def _ready(*imports: str) -> int:
    for name in imports:
        importlib.import_module(name)
    return os.getpid()


def _in_the_process() -> None:
    """Set-up of the planning process: Ctrl-C in a terminal reaches the whole process
    group, but only serve should act on it; serve's end, however it comes, is this
    process's end too; and serve's own requests come first (`outbox.niceness`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_in_the_background()
    parent = multiprocessing.parent_process()
    if parent is not None:
        def exit_with_parent() -> None:
            multiprocessing.connection.wait([parent.sentinel])
            os._exit(0)

        threading.Thread(target=exit_with_parent, name="outbox-planning-parent",
                         daemon=True).start()
