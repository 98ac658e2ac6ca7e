"""Several `outbox worker` nodes on one PostgreSQL database (issue 14, multi-node):
delivery throughput with 1, 2 and 3 nodes, and a node killed mid-run.

    .venv/bin/python bench/multinode.py [--messages 2000] [--reps 3] [--nodes 1,2,3]
                                        [--kill | --no-kill] [--attachment-kb 4] [--logs DIR]

Per rep and per node count N, on a fresh PostgreSQL database (127.0.0.1:5432) with
`[storage] blobs = "database"` (attachments as chunks in the database, no shared disk):
- M messages of 2 KB of text plus an attachment of --attachment-kb KB (its own blob
  each) are queued in-process while no worker runs (bench/throughput.py's
  `fill_queue`, which also creates the schema: no two nodes race to migrate);
- N `outbox worker` processes are started by real exec, one config file each
  (--connections relay sessions per node), delivering to one fast SMTP sink
  (tests/smtpd.py in its own process, new per run, counting Message-IDs);
- the database is polled (one connection, every 50 ms) until all M are sent.
The rate is M over the seconds from spawning the workers to the last `sent` (start-up
included: about 1.5 s of imports per process); "first→last" leaves start-up out.
With --kill (the default), a last phase runs 3 nodes and, once a third of the mail is
sent, kills the node holding the most claims with SIGKILL; the other two recover them
(they see its liveness lock gone) and deliver the rest.

Checks, per run: every message sent, the sink saw M distinct Message-IDs (none lost),
and no Message-ID twice, except after the kill, where duplicates may not exceed the
`uncertain` events (attempts the dead node may have completed). Prints one table;
exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
from tests.pg import fresh_database  # noqa: E402
from tests.processes import OutboxProcess, base_config, write_config  # noqa: E402

from bench.throughput import fill_queue, start_sink  # noqa: E402

FINAL = ("sent", "failed", "partially_sent", "cancelled")
POLL = 0.05  # seconds between looks at the database


@dataclass
class Run:
    nodes: int
    killed: bool
    messages: int  # queued
    rate: float  # msg/s from spawning the workers to the last `sent`
    window_rate: float  # msg/s from the first `sent` to the last
    sent: int
    received: int  # messages the sink accepted
    distinct: int  # distinct Message-IDs among them
    duplicates: int
    uncertain: int  # `uncertain` events (a recovered claim of the killed node)
    in_flight: int  # claims the killed node held when it died; -1: none was killed
    blob_chunks: int
    directory: Path  # configs, node logs, sink counters

    @property
    def lost(self) -> int:
        return self.messages - self.distinct

    @property
    def ok(self) -> bool:
        allowed = self.uncertain if self.killed else 0
        return (self.sent == self.messages and self.lost == 0 and self.duplicates <= allowed
                and (self.in_flight > 0) == self.killed)


def node_config(directory: Path, url: str, port: int, connections: int,
                node: int) -> dict[str, Any]:
    relay = {"name": "default", "host": "127.0.0.1", "port": port, "security": "none",
             "max_connections": connections}
    return base_config(
        directory, url, [relay],
        logging={"level": "warning", "file": str(directory / f"node{node}.log")},
        delivery={"concurrency": 64, "batch_size": 64, "poll_interval": "100ms",
                  "helo_name": "bench.test"},
        storage={"blobs": "database"})


async def progress(connection: asyncpg.Connection) -> tuple[int, int]:
    """(sent, final) messages now."""
    row = await connection.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'sent'), "
        "count(*) FILTER (WHERE status = ANY($1::text[])) FROM messages", list(FINAL))
    assert row is not None
    return int(row[0]), int(row[1])


async def claims_by_pid(connection: asyncpg.Connection) -> dict[int, int]:
    """Messages in `sending` per claiming process (owner ids are host:pid:random)."""
    rows = await connection.fetch("SELECT claimed_by, count(*) FROM messages "
                                  "WHERE status = 'sending' GROUP BY claimed_by")
    held: dict[int, int] = {}
    for owner, claims in rows:
        parts = str(owner).split(":")
        if len(parts) >= 3 and parts[-2].isdigit():
            held[int(parts[-2])] = int(claims)
    return held


class Watched(NamedTuple):
    seconds: float  # from spawning the workers to the last message final
    window: float  # from the first `sent` to the last message final
    sent: int
    uncertain: int  # `uncertain` events
    in_flight: int  # claims of the killed node at the kill; -1: no kill


async def watch(url: str, workers: list[OutboxProcess], count: int, kill: bool,
                timeout: float) -> Watched:
    """Start the workers and wait until all `count` messages are final. With `kill`,
    once a third is sent, SIGKILL the worker that holds the most claims."""
    connection = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        for worker in workers:
            worker.start(wait=False)
        first: float | None = None
        running, in_flight = list(workers), -1
        while True:
            sent, final = await progress(connection)
            now = time.perf_counter()
            first = first or (now if sent else None)
            if final >= count:
                break
            if now - started > timeout:
                raise SystemExit(f"only {final} of {count} messages were final after "
                                 f"{timeout:.0f} s")
            if kill and in_flight < 0 and sent >= count // 3:
                held = await claims_by_pid(connection)
                victim = max(running, key=lambda w: held.get(pid_of(w), 0))
                if held.get(pid_of(victim), 0):
                    victim.kill()  # SIGKILL to its process group
                    running.remove(victim)
                    in_flight = held[pid_of(victim)]
            for worker in running:
                if worker.proc is not None and worker.proc.poll() is not None:
                    raise SystemExit(f"a worker exited early: {worker.stderr_text()}")
            await asyncio.sleep(POLL)
        uncertain = await connection.fetchval(
            "SELECT count(*) FROM events WHERE type = 'uncertain'")
        return Watched(now - started, now - (first or started), sent, int(uncertain), in_flight)
    finally:
        await connection.close()


def pid_of(worker: OutboxProcess) -> int:
    return worker.proc.pid if worker.proc is not None else -1


def sink_totals(path: Path) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError):
        return {}


def one_run(nodes: int, count: int, kill: bool, args: argparse.Namespace,
            root: Path) -> Run:
    directory = Path(tempfile.mkdtemp(dir=root))
    sink, port, counts = start_sink(directory)
    try:
        with fresh_database("outbox_multinode") as url:
            configs = [node_config(directory, url, port, args.connections, n)
                       for n in range(1, nodes + 1)]
            asyncio.run(fill_queue(configs[0], count, attachment=args.attachment_kb * 1024))
            workers = [OutboxProcess(write_config(directory / f"node{n}.toml", config),
                                     config, command="worker")
                       for n, config in enumerate(configs, start=1)]
            try:
                watched = asyncio.run(watch(url, workers, count, kill, args.timeout))
                for worker in workers:
                    worker.stop(timeout=30)
            finally:
                for worker in workers:
                    worker.kill()  # only those still running
            chunks = asyncio.run(count_chunks(url))
    finally:
        sink.terminate()  # it writes its final counters
        sink.wait(10)
    totals = sink_totals(counts)
    return Run(nodes, kill, count, count / watched.seconds, count / max(watched.window, 1e-9),
               watched.sent, totals.get("messages", 0), totals.get("distinct_message_ids", 0),
               totals.get("duplicates", 0), watched.uncertain, watched.in_flight, chunks,
               directory)


async def count_chunks(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM blob_chunks"))
    finally:
        await connection.close()


def label(nodes: int, killed: bool) -> str:
    return f"{nodes}, one killed" if killed else str(nodes)


def report(runs: list[Run], args: argparse.Namespace) -> None:
    keys = list(dict.fromkeys((r.nodes, r.killed) for r in runs))
    reps = max(sum(1 for r in runs if (r.nodes, r.killed) == key) for key in keys)
    print(f"\n{args.messages} messages (2 KB text + {args.attachment_kb} KB attachment in the "
          f"database blob store), {args.connections} relay sessions per node, "
          f"median of {reps} rep(s)")
    print("| nodes | " + " | ".join(f"rep {i + 1} msg/s" for i in range(reps))
          + " | median msg/s | vs 1 node | first→last msg/s | sent | at sink (distinct) "
          "| duplicates | lost | in flight at kill | uncertain | check |")
    print("|---" * (reps + 11) + "|")
    base: float | None = None
    for key in keys:
        mine = [r for r in runs if (r.nodes, r.killed) == key]
        median = statistics.median(r.rate for r in mine)
        if key == (1, False):
            base = median
        cells = [f"{r.rate:,.0f}" for r in mine] + ["—"] * (reps - len(mine))
        versus = f"{median / base:.2f}x" if base else "—"
        print(f"| {label(*key)} | " + " | ".join(cells)
              + f" | {median:,.0f} | {versus} "
              f"| {statistics.median(r.window_rate for r in mine):,.0f} "
              f"| {sum(r.sent for r in mine):,} "
              f"| {sum(r.received for r in mine):,} ({sum(r.distinct for r in mine):,}) "
              f"| {sum(r.duplicates for r in mine)} | {sum(r.lost for r in mine)} "
              f"| {sum(r.in_flight for r in mine) if key[1] else '—'} "
              f"| {sum(r.uncertain for r in mine)} "
              f"| {'ok' if all(r.ok for r in mine) else 'FAIL'} |")
    print("Sums over the reps from `sent` on. check: every message sent and its Message-ID "
          "seen at the sink, none twice (after the kill: duplicates ≤ uncertain events, and "
          "the killed node held claims).")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"Caveat: every node, PostgreSQL, the sink and this script share one machine of "
          f"{os.cpu_count()} cores (load average now {load}); more nodes cannot add CPU here, "
          "so the rows show what sharing one database costs or gains, not scale-out "
          "across machines.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--nodes", default="1,2,3", help="node counts, comma-separated")
    parser.add_argument("--kill", action=argparse.BooleanOptionalAction, default=True,
                        help="also run 3 nodes and kill -9 one of them mid-run")
    parser.add_argument("--connections", type=int, default=4,
                        help="relay sessions per node")
    parser.add_argument("--attachment-kb", type=int, default=4,
                        help="attachment per message, in KB (0: none)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="give up on a run after this many seconds")
    parser.add_argument("--logs", type=Path, help="keep each run's configs, node logs and "
                        "sink counters under this directory (default: deleted)")
    args = parser.parse_args()
    plan = [(int(n), False) for n in args.nodes.split(",")] + ([(3, True)] if args.kill else [])
    runs: list[Run] = []
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    with nullcontext(str(args.logs)) if args.logs else tempfile.TemporaryDirectory() as root:
        for rep in range(1, args.reps + 1):
            for nodes, kill in plan:
                run = one_run(nodes, args.messages, kill, args, Path(root))
                runs.append(run)
                print(f"rep {rep}: {label(nodes, kill)} node(s): {run.rate:,.0f} msg/s "
                      f"({run.window_rate:,.0f} first→last), {run.sent} sent, "
                      f"{run.duplicates} duplicates, {run.lost} lost, "
                      + (f"{run.in_flight} in flight at the kill, " if kill else "")
                      + f"{run.uncertain} uncertain, {run.blob_chunks} blob chunks in the "
                      f"database" + (f" (logs: {run.directory})" if args.logs else ""),
                      flush=True)
    report(runs, args)
    if not all(run.ok for run in runs):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
