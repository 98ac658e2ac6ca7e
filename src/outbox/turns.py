"""A large message's planning at submit runs on a thread, so that the event loop goes
on answering the small requests beside it (issue 17).

Threads share the interpreter's lock: the loop gets it back at each switch interval
(5 ms), not only once the planning is done, but a thread also competes with SQLite's
writer thread for it. Where the work can pause, stepping on the loop is the better
choice, as the attempt's decision does (`core.decide.decide_in_steps`); planning is
one call into the core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Above this many recipients a message's pure work leaves the loop: below it, the
# thread's hand-over (about 0.1 ms) costs more than the work.
LARGE = 200


async def off_the_loop(size: int, work: Callable[P, T], *args: P.args,
                       **kwargs: P.kwargs) -> T:
    """`work(*args, **kwargs)`, on a thread when `size` (recipients) is over LARGE.
    `work` must not touch the loop or its objects: pure functions only."""
    if size <= LARGE:
        return work(*args, **kwargs)
    return await asyncio.to_thread(work, *args, **kwargs)
