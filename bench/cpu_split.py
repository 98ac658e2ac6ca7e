"""Where one bench/compare.py path's CPU goes: each process, and each thread of serve.

    .venv/bin/python bench/cpu_split.py [--path http-lean] [--backend sqlite]
                                        [--messages 5000] [--paced-rate 500]
                                        [--delivery-processes auto]

Runs the path once, as bench/compare.py does (the same config, clients and sink; the
paths: http, http-lean, http-paced, batch, smtp, smtp-source, drain). Around the measured
part (from the first submit, or the release of a drain, until the sink has every
message) it reads the CPU time (user + system) of every process from /proc, and prints
microseconds per message: serve, each of its child processes by command line (the
delivery and planning processes), PostgreSQL's processes together, the sink, this
client; serve's threads by thread id (the one whose id is serve's pid runs the event
loop; on SQLite the busiest other one is the writer); and the machine's idle and steal
shares (bench/cpu_steal.py).

With it (then a throwaway script), stop 40 found that on http-lean serve's two busy
threads, which share one GIL, spent about 1 ms per message while the machine stayed
38 % idle, and that a second delivery process buys a drain about 3 % more rate for
28 % more CPU per message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.processes import OutboxProcess, write_config  # noqa: E402

import bench.compare as compare  # noqa: E402
from bench.cpu_steal import cpu_times, shares  # noqa: E402
from outbox.config.units import parse_process_count  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
Reading = dict[str, float]  # CPU seconds by process (or thread) label


def _seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime stime


def _label(pid: int, serve: int, children: set[int], sinks: set[int]) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    if pid == serve:
        return "serve"
    if pid in children:  # the interpreter's path left out: `-m outbox worker ...`
        return f"serve's child {pid}: {' '.join(argv[1:])[:50]}"
    if pid in sinks:
        return "smtp-sink"
    if pid == os.getpid():
        return "this client"
    return "postgres" if argv[0].startswith("postgres") else ""


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found |= {int(child)} | _children(int(child))
    return found


def processes(serve: int, sink: int) -> Reading:
    """CPU seconds of the processes that take part, by label (PostgreSQL's summed). The
    sink is smtp-sink under `timeout`: the two together."""
    children, sinks, found = _children(serve), {sink} | _children(sink), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            label = _label(int(entry.name), serve, children, sinks)
            if label:
                found[label] = found.get(label, 0.0) + _seconds(entry / "stat")
        except OSError:
            continue  # ended meanwhile
    return found


def threads(pid: int) -> Reading:
    found: Reading = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "event loop" if task.name == str(pid) else "other"
            found[f"{name} (thread {task.name})"] = _seconds(task / "stat")
        except OSError:
            continue
    return found


@contextmanager
def measured(serve: OutboxProcess, sink: compare.Sink) -> Iterator[list[Reading]]:
    """The readings' differences over the block: processes, then serve's threads."""
    assert serve.proc is not None and sink.proc is not None
    pid, machine = serve.proc.pid, cpu_times()
    before = [processes(pid, sink.proc.pid), threads(pid)]
    spent: list[Reading] = []
    yield spent
    after = [processes(pid, sink.proc.pid), threads(pid)]
    spent += [{k: v - old.get(k, 0.0) for k, v in new.items()}
              for old, new in zip(before, after, strict=True)]
    print(f"machine over the run: {shares(machine, cpu_times())}")


def live(path: str, backend: str, count: int, sink: compare.Sink, root: Path
         ) -> tuple[float, list[Reading]]:
    directory = Path(tempfile.mkdtemp(dir=root))
    with compare.database(backend, directory) as url:
        config = compare.outbox_config(directory, url, sink, smtp=path.startswith("smtp"))
        serve = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
        try:
            target = (config["submission"]["bind"] if path.startswith("smtp")
                      else serve.base_url)
            time.sleep(1)  # past serve's own start-up work
            before = sink.count()
            with measured(serve, sink) as spent:
                started = time.perf_counter()
                asyncio.run(compare.LOADS[path](target, count, []))
                sink.wait_for(before + count)
                rate = count / (time.perf_counter() - started)
        finally:
            serve.stop(timeout=30)
    return rate, spent


def drain(path: str, backend: str, count: int, sink: compare.Sink, root: Path
          ) -> tuple[float, list[Reading]]:
    with compare.filled(backend, count, sink, root) as (url, _, serve):
        asyncio.run(compare.hold_or_release(url, hold=True))
        before = sink.count()
        serve.start()
        with measured(serve, sink) as spent:
            started = asyncio.run(compare.hold_or_release(url, hold=False))
            sink.wait_for(before + count)
            rate = count / (time.perf_counter() - started)
    return rate, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="http-lean", choices=[*compare.LOADS, "drain"])
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--paced-rate", type=float, default=compare.PACED_RATE)
    parser.add_argument("--delivery-processes", type=parse_process_count, default="auto")
    args = parser.parse_args()
    compare.DELIVERY_PROCESSES, compare.PACED_RATE = args.delivery_processes, args.paced_rate
    run: Callable[..., tuple[float, list[Reading]]] = drain if args.path == "drain" else live
    print(compare.noise(), flush=True)
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sink = compare.Sink(root)
        stack.callback(sink.stop)
        rate, (by_process, by_thread) = run(args.path, args.backend, args.messages, sink,
                                               root)
    print(f"{args.path} {args.backend}: {rate:,.0f} msg/s; CPU in us per message:")
    for label, seconds in sorted(by_process.items(), key=lambda item: -item[1]):
        print(f"  {label:<72} {seconds * 1e6 / args.messages:7.0f}")
    print("serve's threads:")
    for label, seconds in sorted(by_thread.items(), key=lambda item: -item[1]):
        if seconds > 0:
            print(f"  {label:<72} {seconds * 1e6 / args.messages:7.0f}")


if __name__ == "__main__":
    main()
