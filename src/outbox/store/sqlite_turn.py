"""`WriterTurn`: the processes that share one SQLite file take turns to write.

SQLite lets one writer in at a time; the others wait in its busy handler, which
sleeps between tries for longer and longer (up to 100 ms a try) and never queues
them. Under a steady stream of writes from one process (a delivery process
recording outcomes), a submit in another waited 1.5 s for its turn
(`bench/abuse.py --delivery-processes 1`). So before `BEGIN IMMEDIATE` the writer
thread takes an exclusive `flock` on one file in `<database file>-workers/`,
trying again and again (every 50 µs at first, every millisecond at most): the lock is
free again the moment a transaction ends, and a process that dies releases it with
its descriptors. A process that cannot open the file (a read-only directory) writes
as before, on the busy handler alone.

Tries are not fair by themselves: a process writing back to back (a delivery process
claiming and recording) let go of the turn and took it again within a fraction of a
millisecond, between two of the other's tries, and a submit in serve waited up to half
a second for a gap (`bench/abuse.py --delivery-processes 1`, 40 rounds). So a process
waiting for the turn says so, with a shared lock on a second file, and a process that
wants the turn while another one waits lets that one take it first. Where processes do
nothing but write, that costs a third to a half of the writes per second, and the
longest wait drops from 40-160 ms to 1-24 ms (bench/write_turns.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from outbox.errors import DatabaseUnavailable
from outbox.flocks import try_flock

TURN_FILE = ".writer-turn"
WAITING_FILE = ".writer-waiting"  # shared-locked by each process waiting for the turn
POLL = 0.001  # seconds between tries, at most
# The first try: most transactions take well under a millisecond. With tries every POLL
# only, each handover left the turn free for up to a millisecond, and two processes
# writing back to back made 860 writes/s instead of 2,200-2,800 (bench/write_turns.py).
FIRST_POLL = 0.00005
# Longest a process lets one that waited for the turn go first. A waiter wakes within
# a try (POLL), or later on a loaded machine: at 2 ms, 1 handover in 40 went to the
# process that had just let go, with 4 busy loops beside 2 cores. A waiter frozen while
# waiting holds each of the others' writes up by this much, no longer.
YIELD = 20 * POLL


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
        if self._others_waiting(waiting):
            self._let_them_go_first(waiting)
        if not try_flock(turn, fcntl.LOCK_EX):
            self._wait_for(turn, waiting)
        try:
            yield
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)

    @staticmethod
    def _others_waiting(waiting: int) -> bool:
        """Whether another process holds its shared lock on the waiting file (or is
        checking it this instant: then this one just waits a try longer)."""
        if not try_flock(waiting, fcntl.LOCK_EX):
            return True
        fcntl.flock(waiting, fcntl.LOCK_UN)
        return False

    def _let_them_go_first(self, waiting: int) -> None:
        """Until a process that waited for the turn has it (it stops saying it waits once
        it does), or for YIELD at most: they try at least every POLL."""
        give_up = time.monotonic() + YIELD
        while time.monotonic() < give_up:
            time.sleep(FIRST_POLL)
            if not self._others_waiting(waiting):
                return

    def _wait_for(self, turn: int, waiting: int) -> None:
        """Take the turn, saying so meanwhile; tries more and more seldom, from FIRST_POLL
        up to POLL."""
        deadline = time.monotonic() + self.timeout
        said = False
        pause = FIRST_POLL
        try:
            while True:
                said = said or try_flock(waiting, fcntl.LOCK_SH)
                time.sleep(pause)
                if try_flock(turn, fcntl.LOCK_EX):
                    return
                pause = min(pause * 2, POLL)
                if time.monotonic() >= deadline:
                    raise DatabaseUnavailable(  # as SQLite's own busy timeout
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
