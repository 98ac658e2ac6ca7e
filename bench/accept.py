"""Accept latency and rate: what rate limits and event webhooks cost `POST /v1/messages`.

    .venv/bin/python bench/accept.py [--messages 2000] [--rounds 3] [--backends sqlite,postgres]
                                     [--baseline-src /path/to/other/src] [--setups plain,...]
                                     [--client httpx|lean] [--pause-delivery]

For each backend, starts `outbox serve` (a relay that refuses, so each message is
tried once and deferred for an hour: the worker runs meanwhile) in these set-ups,
interleaved over several rounds, and posts 1 KB messages from 20 concurrent
keep-alive clients:

    plain        the key has no limit, no webhook endpoint
    limited      the key has requests and messages limits it never reaches
                 (leases: one database take a second per limit)
    webhooks     no limit; an endpoint subscribed to `queued` on a local receiver
                 (one delivery row per message, written with its event, and posted)
    baseline     `plain` on the code under --baseline-src (e.g. main), if given

Prints messages/s and p50/p99 latency (ms) per set-up: the median of the rounds.

`--client lean` posts with bench/raw_http.py's client, which leaves the two cores to the
server. `--pause-delivery` stops the delivery process (SIGSTOP) once serve is up and
lets it go on (SIGCONT) before serve stops: what is measured is then the API's work
alone, with nothing else writing to the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pg import fresh_database  # noqa: E402
from tests.processes import API_KEY, OutboxProcess, base_config, free_port, write_config  # noqa: E402
from tests.webhook import WebhookReceiver  # noqa: E402

from bench.raw_http import RawHttp  # noqa: E402

ADMIN = "ob_bench_admin_0123"
CLIENTS = 20
TEXT = "x" * 1000
Post = Callable[[str, int], Awaitable[list[float]]]


def config(directory: Path, url: str, setup: str) -> dict[str, Any]:
    key: dict[str, Any] = {"name": "app", "key": API_KEY, "scopes": ["send", "read"]}
    if setup == "limited":
        key |= {"requests_per_minute": 10_000_000, "messages_per_minute": 10_000_000}
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    # The baseline may predate [webhooks]: only the set-up that needs it has it.
    webhooks = {"webhooks": {"allowed_networks": ["127.0.0.0/8"]}} if setup == "webhooks" else {}
    return base_config(directory, url, [relay],
                       logging={"level": "warning", "file": str(directory / "outbox.log")},
                       retry={"first_delay": "1h", "max_delay": "1h", "max_attempts": 5,
                              "max_age": "1d"},
                       auth={"api_keys": [key, {"name": "ops", "key": ADMIN,
                                                "scopes": ["admin"]}]},
                       secrets={"key_file": str(directory / "secret.key")}, **webhooks)


async def post_lean(base_url: str, count: int) -> list[float]:
    latencies: list[float] = []

    async def client(numbers: range) -> None:
        async with RawHttp.for_url(base_url, API_KEY) as http:
            for n in numbers:
                started = time.perf_counter()
                status, answer = await http.post_json("/v1/messages", {
                    "from": "bench@example.test", "to": "sink@example.test",
                    "subject": f"#{n}", "text": TEXT})
                latencies.append(time.perf_counter() - started)
                assert status == 202, answer

    await asyncio.gather(*(client(range(c, count, CLIENTS)) for c in range(CLIENTS)))
    return latencies


async def post_all(base_url: str, count: int) -> list[float]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30,
                                     headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            while not queue.empty():
                n = queue.get_nowait()
                started = time.perf_counter()
                response = await http.post("/v1/messages", json={
                    "from": "bench@example.test", "to": "sink@example.test",
                    "subject": f"#{n}", "text": TEXT})
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 202, response.text

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return latencies


def delivery_processes(serve: OutboxProcess, wait: float = 15.0) -> list[int]:
    """The `outbox worker` children of serve, once there is one (serve starts them after
    it answers)."""
    assert serve.proc is not None
    children = Path(f"/proc/{serve.proc.pid}/task/{serve.proc.pid}/children")
    deadline = time.monotonic() + wait
    while True:
        workers = [int(pid) for pid in children.read_text().split()
                   if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        if workers or time.monotonic() > deadline:
            return workers
        time.sleep(0.1)


@contextmanager
def delivery_paused(serve: OutboxProcess, paused: bool) -> Iterator[None]:
    """The delivery processes serve started, stopped meanwhile (when `paused`)."""
    workers = delivery_processes(serve) if paused else []
    if paused and not workers:
        raise RuntimeError("--pause-delivery: serve runs no delivery process to pause")
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)


def measure(backend: str, setup: str, count: int, baseline_src: str | None,
            receiver: WebhookReceiver, post: Post, paused: bool) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp, \
            (fresh_database("outbox_bench") if backend == "postgres"
             else _sqlite(Path(tmp))) as url:
        directory = Path(tmp)
        values = config(directory, url, setup)
        if paused:  # delivery in a process of its own, to pause (tests' configs deliver in serve)
            values["delivery"] = {**values.get("delivery", {}), "processes": 1}
        env = {"PYTHONPATH": baseline_src} if setup == "baseline" and baseline_src else {}
        outbox = OutboxProcess(write_config(directory / "outbox.toml", values), values, env=env)
        outbox.start()
        try:
            if setup == "webhooks":
                with outbox.client(ADMIN) as admin:
                    admin.post("/v1/webhooks", json={"url": receiver.url, "events": ["queued"]}
                               ).raise_for_status()
            with delivery_paused(outbox, paused):
                asyncio.run(post(outbox.base_url, 200))  # warm up
                started = time.perf_counter()
                latencies = asyncio.run(post(outbox.base_url, count))
                elapsed = time.perf_counter() - started
        finally:
            outbox.stop()
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return count / elapsed, cuts[49] * 1000, cuts[98] * 1000


class _sqlite:
    def __init__(self, directory: Path) -> None:
        self.url = f"sqlite:///{directory}/outbox.db"

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--baseline-src", default=os.environ.get("BASELINE_SRC"))
    parser.add_argument("--setups", default="plain,limited,webhooks")
    parser.add_argument("--client", choices=("httpx", "lean"), default="httpx")
    parser.add_argument("--pause-delivery", action="store_true")
    args = parser.parse_args()
    setups = args.setups.split(",") + (["baseline"] if args.baseline_src else [])
    post = post_lean if args.client == "lean" else post_all
    with WebhookReceiver() as receiver:
        for backend in args.backends.split(","):
            results: dict[str, list[tuple[float, float, float]]] = {s: [] for s in setups}
            for _ in range(args.rounds):
                for setup in setups:
                    results[setup].append(measure(backend, setup, args.messages,
                                                  args.baseline_src, receiver, post,
                                                  args.pause_delivery))
            for setup, runs in results.items():
                rate, p50, p99 = (statistics.median(r[i] for r in runs) for i in range(3))
                print(f"{backend:8} {setup:9} {rate:7.0f} msg/s  p50 {p50:6.1f} ms  "
                      f"p99 {p99:6.1f} ms  (median of {len(runs)})", flush=True)


if __name__ == "__main__":
    main()
