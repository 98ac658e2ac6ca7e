"""Start-up's objects out of the garbage collector's sight.

A long-running process holds about 200,000 objects that live as long as it does: the
modules, the FastAPI app, the settings, SQLAlchemy's tables. A full collection walks all
of them, and it holds every thread for as long: 60-150 ms on the 2-core machine where
bench/abuse.py measures, often enough that it set the p99 of small submits (issue 17).
`gc.freeze` moves them to a generation that collections skip, so a full collection
walks only what was made since.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Freeze what exists; call when start-up is done (`frozen()` and /metrics'
    `outbox_gc_frozen_objects` count them; counting walks them all, 20 ms at a start).
    No collection first: it would cost 0.1 s of CPU per start, to free the little
    garbage start-up leaves."""
    gc.freeze()


def frozen() -> int:
    """Objects that full collections skip."""
    return gc.get_freeze_count()
