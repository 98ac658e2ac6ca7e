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

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.contract.support import new_message  # noqa: E402
from tests.processes import base_config  # noqa: E402

from bench.compare import database  # noqa: E402
from bench.throughput import fill_queue  # noqa: E402
from outbox.clock import utcnow  # noqa: E402
from outbox.store.factory import open_store  # noqa: E402

CLAIMS = 7
FAST = 100


async def measure(url: str) -> str:
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
    return (f"{CLAIMS} claims skipping 'slow' took {claimed} messages of 'fast'; "
            f"median {statistics.median(times) * 1000:.1f} ms, "
            f"slowest {max(times) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--baseline-src", default=os.environ.get("BASELINE_SRC"))
    args = parser.parse_args()
    label = " (baseline)" if os.environ.get("BUSY_CLAIM_BASELINE") else ""
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp, database(backend, Path(tmp)) as url:
            relay = {"name": "slow", "host": "127.0.0.1", "port": 2525, "security": "none"}
            config = base_config(Path(tmp), url, [relay], logging={"level": "warning"})
            asyncio.run(fill_queue(config, args.messages, "x" * 900))
            line = asyncio.run(measure(url))
            print(f"{backend}{label}, {args.messages:,} due for 'slow': {line}", flush=True)
        if args.baseline_src:
            env = {**os.environ, "PYTHONPATH": args.baseline_src, "BUSY_CLAIM_BASELINE": "1"}
            subprocess.run([sys.executable, __file__, "--messages", str(args.messages),
                            "--backends", backend], env=env, check=True)


if __name__ == "__main__":
    main()
