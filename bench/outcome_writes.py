"""What ending claims costs the store: --messages one-recipient messages claimed --batch
at a time, and each batch's attempts recorded (`record_attempts`) in one call, as the
delivery loop records them, on SQLite and on PostgreSQL. Only the recording is timed.

    .venv/bin/python bench/outcome_writes.py [--messages 5000] [--batch 50] [--reps 3]
                                             [--backends sqlite,postgres]
                                             [--baseline-src DIR]

Prints per backend and rep this process's CPU time per recorded attempt (the event
loop's and SQLite's writer thread's), PostgreSQL's server CPU time per attempt (its
backends' processes, read from /proc), and the wall time per batch. With
--baseline-src, each rep runs the code under that directory (another checkout's
`src`) first, then this one's, in fresh processes and fresh databases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HZ = os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU seconds of every postgres process so far."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name, fields = stat.split("(", 1)[1].rsplit(")", 1)
        if name.startswith("postgres"):
            parts = fields.split()
            total += int(parts[11]) + int(parts[12])
    return total / HZ


async def measure(url: str, messages: int, batch: int) -> dict[str, float]:
    from tests.contract.support import LEASE, at, finished, new_message

    from outbox.core.model import MessageStatus
    from outbox.store.factory import open_store

    store = await open_store(url)
    try:
        await store.migrate()
        for start in range(0, messages, 500):
            await store.messages.enqueue_many(
                [new_message(to=[f"user{n}@example.test"])
                 for n in range(start, min(start + 500, messages))])
        cpu = server = wall = 0.0
        for _ in range(-(-messages // batch)):
            claims = await store.messages.claim_due("bench", at(1), at(1) + LEASE, batch)
            records = [finished(c, MessageStatus.SENT, finished_at=at(2)) for c in claims]
            cpu, server, wall = (cpu - time.process_time(), server - postgres_cpu(),
                                 wall - time.perf_counter())
            assert all(await store.messages.record_attempts(records))
            cpu, server, wall = (cpu + time.process_time(), server + postgres_cpu(),
                                 wall + time.perf_counter())
    finally:
        await store.close()
    batches = -(-messages // batch)
    return {"cpu_us": cpu / messages * 1e6, "server_us": server / messages * 1e6,
            "batch_ms": wall / batches * 1e3}


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    from tests.pg import fresh_database

    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            result = asyncio.run(measure(f"sqlite:///{directory}/outbox.db", args.messages,
                                         args.batch))
    else:
        with fresh_database("outbox_bench") as url:
            result = asyncio.run(measure(url, args.messages, args.batch))
    print(json.dumps(result))


def run(src: Path, backend: str, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, __file__, "--child", "--backend", backend,
                          "--messages", str(args.messages), "--batch", str(args.batch)],
                         env=env, capture_output=True, text=True, check=True, cwd=REPO)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sources = [("baseline", args.baseline_src)] if args.baseline_src else []
    sources.append(("this", REPO / "src"))
    for rep in range(1, args.reps + 1):
        for backend in args.backends.split(","):
            for name, src in sources:
                r = run(src, backend, args)
                print(f"rep {rep} {backend:8} {name:8}: CPU {r['cpu_us']:5.0f} us/attempt, "
                      f"PostgreSQL {r['server_us']:5.0f} us/attempt, "
                      f"{r['batch_ms']:6.1f} ms/batch of {args.batch}", flush=True)


if __name__ == "__main__":
    main()
