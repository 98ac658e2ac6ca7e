"""Background work yields the CPU to the API.

Serve's delivery processes (`[delivery] processes`) and its planning process (a large
message's pure work, `outbox.turns`) run at a lower CPU priority than serve itself:
when the cores are busy, a small submit's answer comes first, and the background
work takes what is left. On an idle core they run as fast as before: niceness only
orders processes that wait for the same core (and, where the kernel groups a
session's processes, as Linux desktops and most servers do, only against serve and
its own other processes, not against the database).

On bench/abuse.py (PostgreSQL, a 1,000-recipient message a second among 100 small
submits a second, 2 cores), the small submits' p99 while a big one was stored went
from 57-75 ms to 50-61 ms (four interleaved pairs, each lower niced).
"""

from __future__ import annotations

import contextlib
import os

BACKGROUND = 10  # added to serve's niceness for its delivery and planning processes


def run_in_the_background() -> None:
    """Lower this process's CPU priority by `BACKGROUND` (a process may always lower
    its own; where it cannot, it runs on as it is)."""
    with contextlib.suppress(OSError):  # a sandbox that forbids it
        os.nice(BACKGROUND)
