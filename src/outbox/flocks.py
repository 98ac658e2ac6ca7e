"""`flock` without waiting, for the locks processes share through files (SQLite's
writer turn, a relay's session slots): the kernel drops a process's locks when it
dies, even by `kill -9`."""

from __future__ import annotations

import fcntl


def try_flock(descriptor: int, kind: int) -> bool:
    """Take `kind` (fcntl.LOCK_EX or LOCK_SH) on `descriptor` if it is free now."""
    try:
        fcntl.flock(descriptor, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
