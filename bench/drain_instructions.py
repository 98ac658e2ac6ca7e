"""Instructions a delivery process spends per message in a drain: a count, not a time.

    .venv/bin/python bench/drain_instructions.py [--messages 100,1100] [--reps 1]
                                                 [--backend sqlite]

CPU seconds per message moved by a third between runs of the same code on one machine
(stop 51: a two-process drain of 8,000 messages took 730 to 1,180 us per message, while
bench/compare.py's Python probe took 36 to 77 ms), so a change worth 5 % cannot be seen
in them. This counts instead, under valgrind's callgrind, the instructions of
`outbox worker` (this checkout's `src/`, one process) draining a queue filled beforehand
into Postfix's smtp-sink, with bench/compare.py's config: once per count in
`--messages`, each from a fresh database. The difference between two counts, divided by
the difference in messages, is the cost of a message with start-up and shutdown left
out. Under callgrind the process runs about 100 times slower and its threads take turns,
so the rate says nothing, and how results group into transactions still varies from run
to run: per message, 100 to 600 messages gave 2.38, 2.40 and 2.53 million instructions
in three runs of one checkout; 100 to 1,100 gave 2.572 and 2.582 million (stop 51).
Counts are of user space only: system calls count as the instructions that make them.
Work done every so often (the claim loop's poll, lease renewals, the webhook poller)
counts by the run's wall time, which callgrind stretches: it is part of the figure, the
same on both sides of a comparison. With `--separate-threads=yes` (stop 51), per message:
the event loop 1.35 million instructions, the SQLite writer thread 0.93 million, the
reader threads and the rest 0.15 million.
Prints the total for each count and the instructions per message. Needs valgrind (on
the machine) and smtp-sink (scripts/bench-deps.sh); 100 to 1,100 takes about 6 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.processes import write_config  # noqa: E402

import bench.compare as compare  # noqa: E402
from bench.throughput import fill_queue  # noqa: E402


def instructions(directory: Path, backend: str, count: int, sink: compare.Sink) -> int:
    """The instructions `outbox worker` ran to drain `count` messages, exit included."""
    with compare.database(backend, directory) as url:
        config = compare.outbox_config(directory, url, sink, smtp=False)
        path = write_config(directory / "outbox.toml", config)
        asyncio.run(fill_queue(config, count, compare.TEXT))
        before = sink.count()
        out, said = directory / "callgrind.out", directory / "valgrind.err"
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONHASHSEED": "0"}
        with said.open("wb") as stderr:  # a file, not a pipe nobody reads until the end
            worker = subprocess.Popen(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                 sys.executable, "-m", "outbox", "worker", "--config", str(path)],
                env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            sink.wait_for(before + count, timeout=3600)
            time.sleep(1)  # the results of the last attempts written, as in a drain
        finally:
            stop(worker)
        text = said.read_bytes()
        found = re.findall(rb"Collected : (\d+)", text)
        if not found:
            raise SystemExit(f"no count from callgrind:\n{text.decode()[-2000:]}")
        return int(found[-1])


def stop(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the worker ends its attempts and callgrind writes its count), then
    SIGKILL if it has not ended within 10 minutes."""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=600)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", default="100,1100",
                        help="two or more queue sizes, comma-separated")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.messages.split(",")})
    if len(counts) < 2:
        parser.error("--messages needs two different queue sizes: their difference is "
                     "what a message costs")
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sink = compare.Sink(root)
        stack.callback(sink.stop)
        for rep in range(1, args.reps + 1):
            totals = {}
            for n in counts:
                directory = Path(tempfile.mkdtemp(dir=root))
                totals[n] = instructions(directory, args.backend, n, sink)
                print(f"rep {rep}: {n:>6,} messages: {totals[n]:>16,} instructions",
                      flush=True)
            low, high = counts[0], counts[-1]
            per = (totals[high] - totals[low]) / (high - low)
            print(f"rep {rep}: {per:,.0f} instructions per message "
                  f"({args.backend}, {low:,} to {high:,} messages)", flush=True)


if __name__ == "__main__":
    main()
