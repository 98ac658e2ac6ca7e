"""A claim that skips a busy relay, with that relay's backlog due ahead of other mail.

    .venv/bin/python bench/busy_claim.py [--messages 100000] [--backends sqlite,postgres]
                                         [--baseline-src DIR]

A worker with no room left for a relay (worker/relay_room.py) claims past that relay's
due mail to the others' (`claim_due(..., busy={relay})`). This queues --messages for a
relay `slow`, then 100 for `fast`, all due, and times claims of 10 that skip `slow`,
each on a fresh database; on SQLite a claim runs inside the write turn every submit
waits for. Walked, the backlog cost a claim time in proportion to it; read relay by
relay (store/sql/busy_claim.py), it should not. --baseline-src runs this script again
with that source tree first on PYTHONPATH.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.contract.support import new_message  # noqa: E402

from bench.filled_queue import arguments, each_backend  # noqa: E402
from outbox.clock import utcnow  # noqa: E402
from outbox.store.factory import open_store  # noqa: E402

CLAIMS = 7
FAST = 100


async def measure(url: str) -> list[str]:
    store = await open_store(url)
    try:
        for n in range(FAST):
            await store.messages.enqueue(new_message(to=[f"f{n}@fast.test"], relay="fast",
                                                     accepted_at=utcnow()))
        times, claimed = [], 0
        for n in range(CLAIMS):
            now = utcnow() + timedelta(seconds=1)
            started = time.perf_counter()
            claims = await store.messages.claim_due(f"bench{n}", now,
                                                    now + timedelta(minutes=5), 10,
                                                    busy={"slow"})
            times.append(time.perf_counter() - started)
            claimed += len(claims)
            assert all(c.message.recipients[0].relay == "fast" for c in claims)
    finally:
        await store.close()
    return [f"{CLAIMS} claims skipping 'slow' took {claimed} messages of 'fast'; "
            f"median {statistics.median(times) * 1000:.1f} ms, "
            f"slowest {max(times) * 1000:.1f} ms"]


def main() -> None:
    args = arguments(__doc__.splitlines()[0], messages=100_000)
    each_backend(__file__, args, "slow", measure, "BUSY_CLAIM_BASELINE")

if __name__ == "__main__":
    main()
