"""What one small submit costs `outbox serve`: CPU milliseconds and latency.

    .venv/bin/python bench/submit_cost.py [--messages 1500] [--reps 3] [--clients 10]
                                          [--backends sqlite,postgres] [--baseline-src DIR]

Starts `outbox serve` (the set-up of bench/abuse.py: a relay that refuses, so each
message is claimed, tried once and deferred for an hour in the same process), warms
it with 200 submits, then posts --messages 1 KB messages from --clients keep-alive
clients as fast as they are answered. Prints, per backend and rep, the serve
process's CPU time per submit (user + system, from /proc, including the worker's
claim and attempt of that message), the rate, and the p50/p99 latency; with
--baseline-src, the same for the code under that directory, rep by rep.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.processes import API_KEY  # noqa: E402

from bench.abuse import serve, small  # noqa: E402
from bench.cpu_steal import cpu_times, shares  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def post(url: str, count: int, clients: int) -> list[float]:
    latencies: list[float] = []
    numbers = iter(range(count))
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        async def one_client() -> None:
            for n in numbers:
                start = time.perf_counter()
                answer = await client.post("/v1/messages", json=small(n))
                latencies.append(time.perf_counter() - start)
                if answer.status_code != 202:
                    raise SystemExit(f"submit refused: {answer.status_code} {answer.text}")
        await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies


def measure(backend: str, args: argparse.Namespace, env: dict[str, str]) -> str:
    with serve(backend, env) as outbox:
        assert outbox.proc is not None
        asyncio.run(post(outbox.base_url, 200, args.clients))
        time.sleep(1)
        before, start = cpu_seconds(outbox.proc.pid), time.perf_counter()
        machine = cpu_times()
        latencies = asyncio.run(post(outbox.base_url, args.messages, args.clients))
        took = time.perf_counter() - start
        machine_line = shares(machine, cpu_times())
        time.sleep(2)  # the worker's attempts of the last messages
        used = cpu_seconds(outbox.proc.pid) - before
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return (f"{used * 1000 / args.messages:5.2f} CPU ms/submit  "
            f"{args.messages / took:5.0f} msg/s  p50 {cuts[49] * 1000:5.1f} ms  "
            f"p99 {cuts[98] * 1000:5.1f} ms  ({machine_line})")


def main() -> None:
    # The clients' own full collections (60 ms here, over the imports) would count as
    # server latency; serve freezes its start-up objects the same way (runtime/heap.py).
    gc.freeze()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--baseline-src", default=os.environ.get("BASELINE_SRC"))
    args = parser.parse_args()
    for backend in args.backends.split(","):
        for rep in range(1, args.reps + 1):
            print(f"{backend} rep {rep}: {measure(backend, args, {})}", flush=True)
            if args.baseline_src:
                print(f"{backend} rep {rep} (baseline): "
                      f"{measure(backend, args, {'PYTHONPATH': args.baseline_src})}", flush=True)


if __name__ == "__main__":
    main()
