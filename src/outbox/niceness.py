"""Background work yields the CPU to the API.

Serve's delivery processes (`[delivery] processes`) and its planning process (a large
message's pure work, `outbox.turns`) run at a lower CPU priority than serve itself:
when the cores are busy, a small submit's answer comes first, and the background
work takes what is left. Niceness only orders processes that wait for the same core
(and, where the kernel groups a session's processes,
`/proc/sys/kernel/sched_autogroup_enabled`, only against serve and its own other
processes, not against the database).

On bench/abuse.py (a 1,000-recipient message a second among 100 small submits a second,
2 cores), the small submits' p99 while a big one was stored, against the same code
without it, in two undisturbed interleaved reps: PostgreSQL 46 and 48 ms against 72 and
59 ms; SQLite 36 and 51 ms against 58 and 109 ms (a third rep, with 5-14 % of the CPU
stolen by the hypervisor, gave 124 against 84 and 56 against 53).

On Linux a thread's priority is its own, and a new thread starts with its creator's. A
delivery process lowers its event loop's once its store is open, so the SQLite writer
thread, started by the opening (as is a reader thread), keeps serve's: it holds the
database's write lock, which serve's submits wait for, and at the lower priority serve's
own threads took the CPU from it while it held the lock. bench/compare.py --paths
http-lean on SQLite, with both processes' write transactions timed, four runs each way:
a delivery transaction held the lock 3.1-7.8 ms at the median, 2.9-3.5 ms with the
writer at serve's priority, and serve's commits waited 746-877 ms in all for their
turns, against 631-718 ms (rates 1,231-1,537 msg/s either way, inside the noise).
"""

from __future__ import annotations

import contextlib
import os

BACKGROUND = 10  # added to serve's niceness for its delivery and planning processes


def run_in_the_background() -> None:
    """Lower the CPU priority of this thread, and of the threads it starts from now on,
    by `BACKGROUND` (a process may always lower its own; where it cannot, it runs on as
    it is)."""
    with contextlib.suppress(OSError):  # a sandbox that forbids it
        os.nice(BACKGROUND)
