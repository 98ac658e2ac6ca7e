"""Start-up's objects out of the garbage collector's sight, and fewer young collections.

A long-running process holds about 200,000 objects that live as long as it does: the
modules, the FastAPI app, the settings, SQLAlchemy's tables. A full collection walks all
of them, and it holds every thread for as long: 60-150 ms on the 2-core machine where
bench/abuse.py measures, often enough that it set the p99 of small submits (issue 17).
`gc.freeze` moves them to a generation that collections skip, so a full collection
walks only what was made since.

The youngest generation is collected every `YOUNG` allocations, not Python's 700. In a
drain, a delivery process ran about 80 young collections a thousand messages, and one
of the next generation every ten of those; each walks every young object still alive,
in a busy process the hundred messages in flight and their attempts, however little of
it is garbage. Reference counting frees nearly all of a message's objects as soon as
they are done with; the collector is there for cycles.
"""

from __future__ import annotations

import gc

YOUNG = 10_000  # allocations (net of deallocations) between young collections


def settle() -> None:
    """Freeze what exists, then collect the young generation every `YOUNG` allocations;
    call when start-up is done (`frozen()` and /metrics' `outbox_gc_frozen_objects`
    count them; counting walks them all, 20 ms at a start). No collection first: it
    would cost 0.1 s of CPU per start, to free the little garbage start-up leaves."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)


def frozen() -> int:
    """Objects that full collections skip."""
    return gc.get_freeze_count()
