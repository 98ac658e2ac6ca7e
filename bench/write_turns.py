"""SQLite's write turn under the worst contention: processes writing back to back.

    .venv/bin/python bench/write_turns.py [--processes 2,3] [--writes 1000]
                                          [--baseline-src DIR]

Each process takes the turn (store/sqlite_turn.py) and commits one small insert, as
fast as it can, --writes times, on one SQLite file in a temporary directory (WAL,
synchronous=FULL, as Outbox opens it). Prints, per number of processes, the writes
per second of all of them together and, per process, how long one waited for the turn
(p50 / p99 / max). With --baseline-src, the same for the code under that directory,
run by run. Real processes do more than write between two transactions, so this is the
ceiling of what sharing costs, not what a delivery process sees.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def writer(database: str, writes: int, results: multiprocessing.Queue[list[float]]) -> None:
    from outbox.store.sqlite_turn import WriterTurn

    turn = WriterTurn(Path(f"{database}-workers"), timeout=30)
    conn = sqlite3.connect(database, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous=FULL")
    waited = []
    for _ in range(writes):
        asked = time.perf_counter()
        with turn.held():
            waited.append(time.perf_counter() - asked)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO written VALUES (?)", (os.getpid(),))
            conn.execute("COMMIT")
    conn.close()
    turn.close()
    results.put(sorted(waited))


def run(processes: int, writes: int, label: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        database = f"{directory}/turns.db"
        conn = sqlite3.connect(database)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE written (pid INTEGER)")
        conn.close()
        results: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
        workers = [multiprocessing.Process(target=writer, args=(database, writes, results))
                   for _ in range(processes)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        waits = [results.get() for _ in workers]
        elapsed = time.perf_counter() - started
        for worker in workers:
            worker.join()

    def ms(waited: list[float], share: float) -> str:
        return f"{waited[min(len(waited) - 1, int(len(waited) * share))] * 1000:.2f}"

    print(f"{processes} processes{label}: {processes * writes / elapsed:,.0f} writes/s; "
          "wait for the turn p50/p99/max ms: "
          + "; ".join(f"{ms(w, 0.5)}/{ms(w, 0.99)}/{w[-1] * 1000:.1f}" for w in waits),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="2,3")
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--baseline-src", default=os.environ.get("BASELINE_SRC"))
    parser.add_argument("--label", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for processes in (int(n) for n in args.processes.split(",")):
        if args.baseline_src:
            subprocess.run([sys.executable, __file__, "--processes", str(processes),
                            "--writes", str(args.writes), "--label", " (baseline)"],
                           check=True, env={**os.environ, "PYTHONPATH": args.baseline_src})
        run(processes, args.writes, args.label)


if __name__ == "__main__":
    main()
