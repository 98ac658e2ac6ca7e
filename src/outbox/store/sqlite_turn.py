"""`WriterTurn`: the processes that share one SQLite file take turns to write.

SQLite lets one writer in at a time; the others wait in its busy handler, which
sleeps between tries for longer and longer (up to 100 ms a try) and never queues
them. Under a steady stream of writes from one process (a delivery process
recording outcomes), a submit in another waited 1.5 s for its turn
(`bench/abuse.py --delivery-processes 1`). So before `BEGIN IMMEDIATE` the writer
thread takes an exclusive `flock` on one file in `<database file>-workers/`,
trying every millisecond: the lock is free again the moment a transaction ends,
and a process that dies releases it with its descriptors. A process that cannot
open the file (a read-only directory) writes as before, on the busy handler alone.

Tries every millisecond are not fair by themselves: a process writing back to back (a
delivery process claiming and recording) let go of the turn and took it again within
a fraction of a millisecond, between two of the other's tries, and a submit in serve
waited up to half a second for a gap (`bench/abuse.py --delivery-processes 1`, 40
rounds). So a process waiting for the turn says so, with a shared lock on a second
file, and a process that wants the turn while another one waits queues behind it
instead of taking it: under contention the processes take turns.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from outbox.errors import StorageError

TURN_FILE = ".writer-turn"
WAITING_FILE = ".writer-waiting"  # shared-locked by each process waiting for the turn
POLL = 0.001  # seconds between tries


class WriterTurn:
    """Used by one thread (the runner's writer); `timeout` as SQLite's busy timeout."""

    def __init__(self, directory: Path, timeout: float) -> None:
        self.path = directory / TURN_FILE
        self.waiting_path = directory / WAITING_FILE
        self.timeout = timeout
        self._fds: tuple[int, int] | None = None
        self._unavailable = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fds = self._descriptors()
        if fds is None:
            yield
            return
        turn, waiting = fds
        if self._others_waiting(waiting) or not _try_lock(turn, fcntl.LOCK_EX):
            self._wait_for(turn, waiting)
        try:
            yield
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)

    @staticmethod
    def _others_waiting(waiting: int) -> bool:
        """Whether another process holds its shared lock on the waiting file (or is
        checking it this instant: then this one just waits a try longer)."""
        if not _try_lock(waiting, fcntl.LOCK_EX):
            return True
        fcntl.flock(waiting, fcntl.LOCK_UN)
        return False

    def _wait_for(self, turn: int, waiting: int) -> None:
        """Take the turn after the processes already waiting: this one sleeps a try's
        length before its first, and they try every POLL."""
        deadline = time.monotonic() + self.timeout
        said = False
        try:
            while True:
                said = said or _try_lock(waiting, fcntl.LOCK_SH)
                time.sleep(POLL)
                if _try_lock(turn, fcntl.LOCK_EX):
                    return
                if time.monotonic() >= deadline:
                    raise StorageError(
                        f"another process has held the database's write turn for "
                        f"{self.timeout:g}s ({self.path})",
                        hint="a process using the database is stuck or stopped: find it "
                             "with `fuser " + str(self.path) + "` and restart it")
        finally:
            if said:
                fcntl.flock(waiting, fcntl.LOCK_UN)

    def _descriptors(self) -> tuple[int, int] | None:
        if self._fds is None and not self._unavailable:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                turn = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    waiting = os.open(self.waiting_path, os.O_RDWR | os.O_CREAT, 0o600)
                except OSError:
                    os.close(turn)
                    raise
            except OSError:
                self._unavailable = True
                return None
            self._fds = (turn, waiting)
        return self._fds

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
