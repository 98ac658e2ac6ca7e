"""What one 1,000-recipient message costs the store, step by step, in CPU.

    .venv/bin/python bench/big_message_cost.py [--recipients 1000] [--reps 8]
                                               [--backends sqlite,postgres]
                                               [--baseline-src DIR]

For each rep, on a fresh migrated database: the message's insert, its claim, the
record of a relay-wide deferral (one event per recipient) and the count of its
addresses' usage (transactions of 200, as serve writes it). On SQLite the figure is
the writer thread's CPU, where every other submit waits (issue 17); on PostgreSQL the
process's CPU, which is the event loop's. Medians of the reps after the first two.
CPU time, unlike bench/abuse.py's latencies, hardly moves with the machine's load,
so two commits compare in one run (--baseline-src runs this script again with that
source tree first on PYTHONPATH).

On PostgreSQL it also prints the server's side: the CPU time of the backend process
that ran each step (from /proc, in clock ticks of 10 ms, so summed over the reps
after the first two and divided: give --reps 40 for a figure to 0.3 ms). The
backends compete with every other submit for the machine's cores: a sequential scan
there slowed bench/abuse.py's small submits while costing the event loop nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import text  # noqa: E402
from tests.contract.support import LEASE, at, finished, new_message  # noqa: E402
from tests.pg import fresh_database, migrate, sqlite_template  # noqa: E402

from bench.submit_cost import cpu_seconds  # noqa: E402
from outbox.core.model import (  # noqa: E402
    Event,
    EventType,
    MessageStatus,
    RecipientStatus,
    RecipientUpdate,
)
from outbox.store.factory import open_store  # noqa: E402
from outbox.store.sql import queries  # noqa: E402

USAGE_CHUNK = 200  # as service/contacts.py writes usage


def cpu_clock(backend: str) -> Callable[[], float]:
    return time.thread_time if backend == "sqlite" else time.process_time


async def measure(backend: str, url: str, recipients: int, reps: int) -> dict[str, float]:
    store = await open_store(url)
    runner: Any = store.messages._run  # type: ignore[attr-defined]
    clock = cpu_clock(backend)
    spent: dict[str, list[float]] = {"insert": [], "claim": [], "record": [], "usage": []}

    server = dict.fromkeys(spent, 0.0)  # CPU seconds of the PostgreSQL backend, all reps

    def timed(step: str, body: Callable[..., Any]) -> Callable[..., Any]:
        # On SQLite the body runs on the writer thread: its CPU is that thread's.
        def run(conn: Any, *args: Any, **kwargs: Any) -> Any:
            backend_pid = (conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                           if backend == "postgres" else None)
            used = cpu_seconds(backend_pid) if backend_pid else 0.0
            started = clock()
            try:
                return body(conn, *args, **kwargs)
            finally:
                spent[step][-1] += clock() - started
                if len(spent[step]) > 2:
                    server[step] += (cpu_seconds(backend_pid) if backend_pid else 0.0) - used
        return run

    write = runner.write
    usage_runner: Any = store.contacts._run  # type: ignore[attr-defined]
    usage_write = usage_runner.write
    for rep in range(reps):
        for step in spent:
            spent[step].append(0.0)
        to = [f"r{rep}-{n}@example.com" for n in range(recipients)]
        await write(timed("insert", queries.insert_messages), [new_message(to=to)])
        runner.write = lambda body, *a, **k: write(timed("claim", body), *a, **k)
        (claim,) = await store.messages.claim_due("w", at(1 + rep), at(1 + rep) + LEASE, 1)
        runner.write = write
        now = at(2 + rep)
        updates = [RecipientUpdate(a, RecipientStatus.DEFERRED, None, None,
                                   "Connection refused", "connection_refused") for a in to]
        events = tuple(Event(now, EventType.DEFERRED, 1, recipient=a,
                             guidance="connection_refused",
                             detail="Connection refused; next attempt at 2031-01-01T00:00:00")
                       for a in to)
        record = dataclasses.replace(
            finished(claim, MessageStatus.DEFERRED, due_at=at(9999), updates=updates),
            events=(Event(now, EventType.ATTEMPT, 1, detail=f"{recipients} deferred"),
                    *events))
        await write(timed("record", queries.record_attempts), [record])
        usage_runner.write = lambda body, *a, **k: usage_write(timed("usage", body), *a, **k)
        for start in range(0, recipients, USAGE_CHUNK):
            await store.contacts.record_usage(dict.fromkeys(to[start:start + USAGE_CHUNK], 1),
                                              now)
        usage_runner.write = usage_write
    await store.close()
    figures = {step: statistics.median(values[2:]) * 1000 for step, values in spent.items()}
    if backend == "postgres":
        figures |= {f"server {step}": seconds * 1000 / (reps - 2)
                    for step, seconds in server.items()}
    return figures


def database(backend: str) -> AbstractContextManager[str]:
    if backend == "postgres":
        return fresh_database("outbox_bigcost")
    directory = tempfile.mkdtemp()
    shutil.copyfile(sqlite_template(), f"{directory}/outbox.db")
    return nullcontext(f"sqlite:///{directory}/outbox.db")


def run_here(args: argparse.Namespace, label: str) -> None:
    for backend in args.backends.split(","):
        with database(backend) as url:
            if backend == "postgres":
                asyncio.run(migrate(url))
            figures = asyncio.run(measure(backend, url, args.recipients, args.reps))
        where = "writer thread" if backend == "sqlite" else "event loop"
        client = {step: ms for step, ms in figures.items() if not step.startswith("server")}
        print(f"{backend}{label}: {args.recipients:,}-recipient message, CPU ms on the "
              f"{where}: " + ", ".join(f"{step} {ms:.2f}" for step, ms in client.items())
              + f", all {sum(client.values()):.2f}", flush=True)
        if len(client) < len(figures):
            server = {step[len("server "):]: ms for step, ms in figures.items()
                      if step.startswith("server")}
            print(f"{backend}{label}: the same, CPU ms of the server's backend: "
                  + ", ".join(f"{step} {ms:.1f}" for step, ms in server.items())
                  + f", all {sum(server.values()):.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--baseline-src", default=os.environ.get("BASELINE_SRC"))
    parser.add_argument("--label", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_src:
        argv = [sys.executable, __file__, "--recipients", str(args.recipients), "--reps",
                str(args.reps), "--backends", args.backends, "--label", " (baseline)"]
        subprocess.run(argv, check=True, env={**os.environ, "PYTHONPATH": args.baseline_src})
    run_here(args, args.label)


if __name__ == "__main__":
    main()
