"""Short turns of the event loop: one large message's pure work (planning, the
attempt's verdict over 1,000 recipients) runs on a thread, so that the small
requests beside it are not held up for its whole length (issue 17).

Python's threads share one interpreter lock, but the loop's thread gets it back at
the interpreter's switch interval (5 ms), not after the whole computation: a small
request waits a few milliseconds, never the 10-15 ms of one big step.
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
