"""Drain rate of one `outbox worker`, two checkouts in turn: an A/B of a change's wall time.

    .venv/bin/python bench/drain_ab.py BASE HEAD [--messages 10000] [--reps 3]

BASE and HEAD are checkouts (`git worktree add /tmp/base REV`). Each rep fills a fresh
SQLite queue (bench/compare.py's config and 1 KB message, Postfix's smtp-sink as the
relay), starts `outbox worker` from the checkout's `src/` and times the sink from the
first delivery to the last (start-up left out); BASE then HEAD, rep after rep, so a slow spell of
the machine falls on both. Prints each drain's msg/s. bench/drain_instructions.py counts
the instructions instead (threads taking turns under callgrind); this one also sees
what threads lose waiting for each other, such as the GIL. Needs smtp-sink
(scripts/bench-deps.sh).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bench.compare as compare  # noqa: E402


def drain_rate(checkout: Path, count: int, sink: compare.Sink, root: Path) -> float:
    with compare.filled("sqlite", count, sink, root) as (_, _, serve):  # serve not started
        before = sink.count()
        env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as `make bench` runs it
        worker = subprocess.Popen([sys.executable, "-m", "outbox", "worker", "--config",
                                   str(serve.config_path)], env=env, stdout=subprocess.DEVNULL)
        try:
            started = sink.wait_for(before + 1, timeout=120)  # the worker's start-up left out
            first = sink.count()
            ended = sink.wait_for(before + count, timeout=600)
            return (before + count - first) / (ended - started)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("head", type=Path)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sink = compare.Sink(root)
        stack.callback(sink.stop)
        for rep in range(1, args.reps + 1):
            for name, checkout in (("base", args.base), ("head", args.head)):
                rate = drain_rate(checkout.resolve(), args.messages, sink, root)
                print(f"rep {rep}: {name} {checkout}: {rate:,.0f} msg/s", flush=True)


if __name__ == "__main__":
    main()
