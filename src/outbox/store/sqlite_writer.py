"""`WriterThread`: SQLite's one writer thread, with the writes a client waits on first.

The writes of a process queue for one thread. In plain arrival order, an enqueue (a
client waiting for its 202) also waited for every claim, attempt record and piece of
housekeeping queued before it: behind a 1,000-recipient message, a claim (15 ms) and
its deferral's record (20-40 ms) could both be ahead (bench/abuse.py, issue 17). Here
an urgent write goes before the others that are still waiting, so it waits for at most
the transaction under way. Writes of one urgency keep their order. The others cannot
starve: the urgent ones are the group commit's (sql/group_commit.py), which sends its
next group only once the last one is committed, so at most one urgent write waits at a
time and each other write waits for at most one of them.

`oldest_wait()` is how long the oldest write not yet done has waited: `/healthz` says so
when another process holds the database's write lock (service/health.py).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

URGENT, IN_TURN = 0, 1


class WriterThread:
    """One thread that runs submitted calls, urgent ones first, each in arrival order."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._waiting: list[tuple[int, int, Callable[[], Any], Future[Any]]] = []
        self._since: dict[int, float] = {}  # arrival -> when submitted, until it is done
        self._arrivals = itertools.count()
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, call: Callable[[], Any], *, urgent: bool = False) -> Future[Any]:
        future: Future[Any] = Future()
        with self._changed:
            if self._closed:
                raise RuntimeError("the SQLite writer has shut down")
            if self._thread is None:  # started at the first write: many commands only read
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            arrival = next(self._arrivals)
            self._since[arrival] = time.monotonic()
            heapq.heappush(self._waiting, (URGENT if urgent else IN_TURN, arrival, call, future))
            self._changed.notify()
        return future

    def oldest_wait(self) -> float:
        """Seconds since the oldest write that is not done yet (waiting or under way) was
        submitted; 0 when there is none."""
        with self._changed:
            first = min(self._since.values(), default=None)
        return 0.0 if first is None else time.monotonic() - first

    def shutdown(self) -> None:
        """Run what is waiting, then end the thread."""
        with self._changed:
            self._closed = True
            self._changed.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closed:
                    self._changed.wait()
                if not self._waiting:
                    return
                _, arrival, call, future = heapq.heappop(self._waiting)
            try:
                self._run_one(call, future)
            finally:
                with self._changed:
                    del self._since[arrival]

    @staticmethod
    def _run_one(call: Callable[[], Any], future: Future[Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return  # its caller stopped waiting before it started
        try:
            result = call()
        except BaseException as exc:  # the caller's to handle, whatever it is
            future.set_exception(exc)
        else:
            future.set_result(result)
