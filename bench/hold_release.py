"""A relay's backlog held and released: how long, and how long a submit waits meanwhile.

    .venv/bin/python bench/hold_release.py [--messages 20000] [--backends sqlite,postgres]
                                           [--baseline-src DIR]

What a failed login does to a relay's waiting mail (`hold_relay`), and what new
credentials do (`release_relay`), on a queue of --messages, each on a fresh database.
50 ms into each, a second store (as another process would) submits one message: on
SQLite it waits for the writer, so its wait is what every submit of the API would see.
Held and released a chunk per transaction (store/sql/relay_holds.py), the wait should
stay near one chunk's time whatever the backlog (issue 17: big work never holds the
writer). --baseline-src runs this script again with that source tree first on PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.contract.support import new_message  # noqa: E402

from bench.filled_queue import arguments, each_backend  # noqa: E402
from outbox.clock import utcnow  # noqa: E402
from outbox.core.model import Event, EventType  # noqa: E402
from outbox.store.factory import open_store  # noqa: E402

SUBMIT_AFTER = 0.05  # seconds into the hold or release


async def measure(url: str) -> list[str]:
    operator, client = await open_store(url), await open_store(url)
    lines = []
    try:
        now = utcnow()
        held = Event(now, EventType.HELD, detail="bench: relay needs attention")
        steps = (("hold", operator.messages.hold_relay("default", now, "bench", held)),
                 ("release", operator.messages.release_relay("default", now)))
        for name, step in steps:
            started = time.perf_counter()
            task = asyncio.create_task(step)
            await asyncio.sleep(SUBMIT_AFTER)
            submitted = time.perf_counter()
            await client.messages.enqueue(new_message(to=["late@example.test"]))
            waited = time.perf_counter() - submitted
            count = await task
            lines.append(f"{name} {count:,} messages: {time.perf_counter() - started:.2f} s; "
                         f"a submit meanwhile waited {waited * 1000:.0f} ms")
    finally:
        await operator.close()
        await client.close()
    return lines


def main() -> None:
    args = arguments(__doc__.splitlines()[0], messages=20_000)
    each_backend(__file__, args, "default", measure, "HOLD_RELEASE_BASELINE")

if __name__ == "__main__":
    main()
