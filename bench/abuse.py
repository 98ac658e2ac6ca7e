"""Big messages against small ones: does one large submit hold up the others?

    .venv/bin/python bench/abuse.py [--big 1000] [--rounds 20] [--clients 10]
                                    [--interval 0.1] [--backends sqlite,postgres]
                                    [--baseline-src DIR] [--delivery-processes N|auto]

Starts `outbox serve` (SQLite in a temporary directory, or a fresh PostgreSQL
database; a relay that refuses, so the worker runs and nothing is delivered)
and, for each round, posts a message with --big recipients (the default limit,
[limits] max_recipients) while --clients keep-alive clients each post a small
message every --interval seconds. Prints, per backend, the latency of the big
submits and the p50, p99 and max of the small submits made while a big one was
in flight, next to the same clients before any big submit and in between, and
shows that a 100,000-recipient message is refused with 422 (and how fast), and the
share of the machine's CPU time its hypervisor took meanwhile (bench/cpu_steal.py).
Target (issue 17): p99 of the small submits under 50 ms while a 1,000-recipient
message is stored. 20 rounds give 150-250 such submits; 5 gave about 35, of which
the p99 is all but the slowest.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pg import fresh_database  # noqa: E402
from tests.processes import API_KEY, OutboxProcess, base_config, free_port, write_config  # noqa: E402

from bench.cpu_steal import cpu_times, shares  # noqa: E402
from bench.raw_http import RawHttp  # noqa: E402
from outbox.config.units import parse_process_count  # noqa: E402


def config(directory: Path, url: str, processes: int | str = "auto") -> dict[str, Any]:
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    return base_config(directory, url, [relay],
                       logging={"level": "warning", "file": str(directory / "outbox.log")},
                       delivery={"processes": processes},
                       retry={"first_delay": "1h", "max_delay": "1h", "max_attempts": 5,
                              "max_age": "1d"})


def small(n: int) -> dict[str, Any]:
    return {"from": "bench@example.test", "to": f"s{n}@example.test", "subject": f"#{n}",
            "text": "x" * 1000}


def big(n: int, recipients: int) -> dict[str, Any]:
    return {"from": "bench@example.test", "subject": f"big #{n}", "text": "x" * 1000,
            "to": [f"b{n}-{i}@example.test" for i in range(recipients)]}


class Phase:
    """(start, end) of every small submit and of every big one."""

    def __init__(self) -> None:
        self.small: list[tuple[float, float]] = []
        self.big: list[tuple[float, float]] = []

    def split(self) -> tuple[list[float], list[float], list[float]]:
        """Small submits' latencies: before the first big one; overlapping a big one;
        the others after the first (the worker then tries the big messages)."""
        first = self.big[0][0] if self.big else float("inf")
        before, during, after = [], [], []
        for start, end in self.small:
            if end < first:
                before.append(end - start)
            elif any(start < b_end and end > b_start for b_start, b_end in self.big):
                during.append(end - start)
            else:
                after.append(end - start)
        return before, during, after


async def small_clients(base_url: str, clients: int, phase: Phase, stop: asyncio.Event,
                        interval: float) -> None:
    """Each client posts a small message every `interval` seconds (well under the
    server's capacity, so latency shows waiting on the big submit, not a queue); the
    clients start evenly spread over one interval. They use bench/raw_http.py: httpx
    cost 1-2 ms of CPU per request on the server's cores, and in its latency."""

    async def client(index: int) -> None:
        async with RawHttp.for_url(base_url, API_KEY) as http:
            n = index * 1_000_000
            # On a schedule of their own, spread over the interval: clients in lock-step
            # would measure their own burst (ten requests at the same instant), not the
            # big submit. Sleeping `interval` after each answer let them drift into
            # lock-step: a stall ends for every client at the same instant.
            loop = asyncio.get_running_loop()
            first = loop.time() + interval * index / clients
            slot = 0
            while not stop.is_set():
                await asyncio.sleep(max(0.0, first + slot * interval - loop.time()))
                n += 1
                started = time.perf_counter()
                status, answer = await http.post_json("/v1/messages", small(n))
                ended = time.perf_counter()
                phase.small.append((started, ended))
                assert status == 202, answer
                # The next free slot: one missed during a long answer is skipped, not
                # made up for with a burst.
                slot = max(slot + 1, math.ceil((loop.time() - first) / interval))

    await asyncio.gather(*(client(i) for i in range(clients)))


async def run(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    recipients, rounds = args.big, args.rounds
    phase = Phase()
    stop = asyncio.Event()
    load = asyncio.create_task(small_clients(base_url, args.clients, phase, stop,
                                             args.interval))
    async with httpx.AsyncClient(base_url=base_url, timeout=600,
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        await asyncio.sleep(3.0)  # warm up, and samples before any big submit
        for n in range(rounds):
            body = big(n, recipients)
            started = time.perf_counter()
            response = await http.post("/v1/messages", json=body)
            phase.big.append((started, time.perf_counter()))
            assert response.status_code == 202, response.text
            await asyncio.sleep(1.0)
        started = time.perf_counter()
        refused = await http.post("/v1/messages", json=big(999, 100_000))
        refused_in = time.perf_counter() - started
    stop.set()
    await load
    before, during, after = phase.split()
    return {"big": [end - start for start, end in phase.big], "before": before[len(before) // 3:],
            "during": during, "after": after,
            "refused": (refused.status_code, refused.json(), refused_in)}


def figures(latencies: list[float]) -> str:
    if len(latencies) < 2:
        return f"{len(latencies)} samples"
    # "inclusive": the default method extrapolates past the slowest sample on a short
    # list, and printed a p99 above the max.
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return (f"p50 {cuts[49] * 1000:6.1f} ms  p99 {cuts[98] * 1000:6.1f} ms  "
            f"max {max(latencies) * 1000:6.1f} ms  ({len(latencies)} submits)")


@contextmanager
def serve(backend: str, env: dict[str, str], delivery_processes: int | str = "auto"
          ) -> Iterator[OutboxProcess]:
    """`outbox serve` with this bench's config, on a fresh database of `backend`,
    stopped on the way out (bench/submit_cost.py uses it too)."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        database: AbstractContextManager[str] = (
            fresh_database("outbox_abuse") if backend == "postgres"
            else nullcontext(f"sqlite:///{directory}/outbox.db"))
        with database as url:
            values = config(directory, url, delivery_processes)
            outbox = OutboxProcess(write_config(directory / "outbox.toml", values), values,
                                   env=env)
            outbox.start()
            try:
                yield outbox
            finally:
                try:
                    outbox.stop(timeout=30)
                except subprocess.TimeoutExpired:  # a baseline still storing 100,000
                    print(f"{backend}: outbox serve did not stop in 30 s: killed")


def measure(backend: str, args: argparse.Namespace, env: dict[str, str]) -> None:
    with serve(backend, env, args.delivery_processes) as outbox:
        started = cpu_times()
        result = asyncio.run(run(outbox.base_url, args))
        machine = shares(started, cpu_times())
    label = f"{backend}{' (baseline)' if env else ''}"
    print(f"{label}: {args.big:,}-recipient submit: "
          f"{', '.join(f'{t * 1000:.0f}' for t in result['big'])} ms")
    print(f"{label}: small submits before any big one: {figures(result['before'])}")
    print(f"{label}: small submits while one is stored: {figures(result['during'])}")
    print(f"{label}: small submits after, in between:   {figures(result['after'])}")
    status, body, took = result["refused"]
    what = f"{body['error']['code']}: {body['error']['message']}" if "error" in body else body
    print(f"{label}: 100,000 recipients: {status} in {took * 1000:.0f} ms: {what}")
    print(f"{label}: noise: {machine}", flush=True)


def main() -> None:
    # The clients' own full collections (60 ms here, over the imports) would count as
    # server latency; serve freezes its start-up objects the same way (runtime/heap.py).
    gc.freeze()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between one client's small submits")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--baseline-src", default=os.environ.get("BASELINE_SRC"))
    parser.add_argument("--delivery-processes", type=parse_process_count, default="auto",
                        help="[delivery] processes of outbox serve (0: deliver in serve; "
                        "auto, the default: one on two cores or more)")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        measure(backend, args, {})
        if args.baseline_src:
            measure(backend, args, {"PYTHONPATH": args.baseline_src})


if __name__ == "__main__":
    main()
