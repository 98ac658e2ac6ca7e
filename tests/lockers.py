"""Another process that holds a SQLite database's write lock, as a long-running
script or an operator's `sqlite3` shell inside `BEGIN EXCLUSIVE` would:

    with SqliteLocker(path) as locker:     # returns once the lock is held
        ...                                # every writer waits, then "database is locked"
        locker.release()                   # or on exit

In WAL mode (the store's) `BEGIN EXCLUSIVE` takes the write lock: readers go on,
writers wait for the busy timeout and then fail.
"""

from __future__ import annotations

import subprocess
import sys
from types import TracebackType

_HOLD = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
connection.close()
print("released", flush=True)
"""


class SqliteLocker:
    def __init__(self, path: str) -> None:
        self.path = path
        self.proc: subprocess.Popen[str] | None = None

    def acquire(self) -> SqliteLocker:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLD, self.path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            self.proc.kill()
            why = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"could not lock {self.path}: {why}")
        return self

    def release(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        self.proc.wait(10)
        if answer != "released":
            raise RuntimeError(f"the locker did not release {self.path} cleanly")

    def __enter__(self) -> SqliteLocker:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            self.release()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
