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

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.contract.support import new_message  # noqa: E402
from tests.processes import base_config  # noqa: E402

from bench.compare import database  # noqa: E402
from bench.throughput import fill_queue  # noqa: E402
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--baseline-src", default=os.environ.get("BASELINE_SRC"))
    args = parser.parse_args()
    label = " (baseline)" if os.environ.get("HOLD_RELEASE_BASELINE") else ""
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp, database(backend, Path(tmp)) as url:
            relay = {"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}
            config = base_config(Path(tmp), url, [relay], logging={"level": "warning"})
            asyncio.run(fill_queue(config, args.messages, "x" * 900))
            for line in asyncio.run(measure(url)):
                print(f"{backend}{label}: {line}", flush=True)
        if args.baseline_src:
            env = {**os.environ, "PYTHONPATH": args.baseline_src, "HOLD_RELEASE_BASELINE": "1"}
            subprocess.run([sys.executable, __file__, "--messages", str(args.messages),
                            "--backends", backend], env=env, check=True)


if __name__ == "__main__":
    main()
