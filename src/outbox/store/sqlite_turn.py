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
POLL = 0.001  # seconds between tries


class WriterTurn:
    """Used by one thread (the runner's writer); `timeout` as SQLite's busy timeout."""

    def __init__(self, directory: Path, timeout: float) -> None:
        self.path = directory / TURN_FILE
        self.timeout = timeout
        self._fd: int | None = None
        self._unavailable = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fd = self._descriptor()
        if fd is None:
            yield
            return
        self._take(fd)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _take(self, fd: int) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StorageError(
                        f"another process has held the database's write turn for "
                        f"{self.timeout:g}s ({self.path})",
                        hint="a process using the database is stuck or stopped: find it "
                             "with `fuser " + str(self.path) + "` and restart it") from None
                time.sleep(POLL)

    def _descriptor(self) -> int | None:
        if self._fd is None and not self._unavailable:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._unavailable = True
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
