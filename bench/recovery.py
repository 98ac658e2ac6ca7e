"""Crash recovery at the default lease: `kill -9` of `outbox serve` mid-delivery,
restart on the same config, on SQLite and PostgreSQL.

    .venv/bin/python bench/recovery.py [--messages 300] [--reps 3] [--backends sqlite,postgres]

A slow relay (each DATA reply waits --data-delay seconds, 4 connections) keeps
deliveries in flight; the queue is filled over the API, the process killed once
about a quarter is delivered, and restarted. Prints, per rep, how many messages
were in flight and the seconds from the restart (the new process spawned) to
"all in-flight mail requeued" (out of the dead process's claim: queued, deferred,
sent, or claimed anew) and to "all sent", and when /healthz first said ok (how
much of it is start-up); then the median per backend. The lease
and sweep interval are left at their defaults (5 minutes, 2 s). No assertions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.support import (  # noqa: E402
    claims,
    healthz,
    recovered,
    relay_for,
    status_counts,
    submit_many,
)
from tests.pg import fresh_database  # noqa: E402
from tests.processes import OutboxProcess, free_port, write_config  # noqa: E402
from tests.smtpd import ScriptedServer, delay  # noqa: E402


def config_for(url: str, relay: dict[str, Any], directory: Path) -> dict[str, Any]:
    return {
        "server": {"bind": f"127.0.0.1:{free_port()}"},
        "database": {"url": url},
        "logging": {"level": "warning", "file": str(directory / "outbox.log")},
        "delivery": {"helo_name": "bench.test"},
        "retry": {"first_delay": "200ms", "max_delay": "1s"},
        "auth": {"api_keys": [{"name": "bench", "key": "ob_test_key_0123456789",
                               "scopes": ["send", "read"]}]},
        "storage": {"blob_dir": str(directory / "blobs")},
        "relays": [relay],
    }


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def one_rep(url: str, directory: Path, messages: int, data_delay: float,
            timeout: float) -> tuple[int, dict[str, float]]:
    """In flight at the kill; seconds from the restart to each mark (missing: not
    reached within `timeout`)."""
    with ScriptedServer(script=[delay("DATA", data_delay)]) as sink:
        config = config_for(url, relay_for(sink), directory)
        path = write_config(directory / "outbox.toml", config)
        first = OutboxProcess(path, config).start()
        try:
            submit_many(first, messages)
            wait_for(lambda: len(sink.messages) >= messages // 4, timeout=120)
        finally:
            first.kill()
        in_flight = claims(url)
        second = OutboxProcess(path, config).start(wait=False)
        marks: dict[str, float] = {}
        checks = {
            "healthy": lambda: healthz(second)[0] == 200,
            "requeued": lambda: recovered(url, in_flight) == set(in_flight),
            "sent": lambda: status_counts(url).get("sent", 0) == messages,
        }
        try:
            while len(marks) < len(checks) and time.monotonic() - second.started_at < timeout:
                for name, check in checks.items():
                    if name not in marks and check():
                        marks[name] = time.monotonic() - second.started_at
                time.sleep(0.05)
        finally:
            second.stop()
    return len(in_flight), marks


def seconds(value: float | None, timeout: float) -> str:
    return f"{value:6.2f}s" if value is not None else f"  >{timeout:.0f}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--data-delay", type=float, default=0.05,
                        help="seconds the relay waits before each DATA reply")
    parser.add_argument("--timeout", type=float, default=400.0,
                        help="give up waiting after this long (the lease is 300 s)")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        requeue_times: list[float] = []
        after_ready: list[float] = []
        for rep in range(1, args.reps + 1):
            with ExitStack() as stack:
                directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                url = (f"sqlite:///{directory}/outbox.db" if backend == "sqlite"
                       else stack.enter_context(fresh_database("outbox_bench")))
                in_flight, marks = one_rep(url, directory, args.messages, args.data_delay,
                                           args.timeout)
            print(f"{backend:8} rep {rep}: {in_flight:3} in flight at the kill; after the "
                  f"restart: /healthz 200 {seconds(marks.get('healthy'), args.timeout)}, "
                  f"in-flight requeued {seconds(marks.get('requeued'), args.timeout)}, "
                  f"all {args.messages} sent {seconds(marks.get('sent'), args.timeout)}",
                  flush=True)
            if "requeued" in marks:
                requeue_times.append(marks["requeued"])
                after_ready.append(marks["requeued"] - marks.get("healthy", 0.0))
        if requeue_times:
            print(f"{backend:8} median restart → all in-flight requeued: "
                  f"{statistics.median(requeue_times):.2f}s ({statistics.median(after_ready):.2f}s "
                  f"after /healthz said ok) over {len(requeue_times)} reps", flush=True)


if __name__ == "__main__":
    main()
