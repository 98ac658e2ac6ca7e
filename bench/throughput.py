"""Delivery throughput: drain a backlog of N messages of 2 KB to a local SMTP sink
over 4 connections, with one `outbox worker` process, on SQLite and PostgreSQL.

    .venv/bin/python bench/throughput.py [--messages 5000] [--backends sqlite,postgres]

Prints one line per backend: messages/s from the first delivery to the last
(the sink runs in its own process; the queue is filled before the worker starts).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pg import fresh_database  # noqa: E402
from tests.processes import write_config  # noqa: E402

from outbox.config import LoggingSettings, Settings  # noqa: E402
from outbox.core.attachments import AttachmentIn  # noqa: E402
from outbox.core.compose import Submission  # noqa: E402
from outbox.observability import configure_logging  # noqa: E402
from outbox.service import Outbox  # noqa: E402


def start_sink(directory: Path) -> tuple[subprocess.Popen[str], int, Path]:
    counts = directory / "sink.json"
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "smtpd.py"), "--port", "0",
                             "--count-file", str(counts)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(line.rsplit(":", 1)[1]), counts


def sink_count(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["messages"])
    except (OSError, ValueError, KeyError):
        return 0


def config_for(url: str, port: int, directory: Path) -> dict[str, Any]:
    return {
        "database": {"url": url},
        "logging": {"level": "warning", "file": str(directory / "worker.log")},
        "delivery": {"concurrency": 64, "batch_size": 64, "poll_interval": "100ms",
                     "helo_name": "bench.test"},
        "relays": [{"name": "default", "host": "127.0.0.1", "port": port, "security": "none",
                    "max_connections": 4}],
    }


def attachments(n: int, size: int) -> tuple[AttachmentIn, ...]:
    """One text attachment of `size` bytes, its own content (its own blob) per message."""
    if size <= 0:
        return ()
    content = (f"attachment of message {n}\n".encode() * (size // 20 + 1))[:size]
    return (AttachmentIn(filename=f"bench-{n}.txt", content_type="text/plain",
                         content_base64=base64.b64encode(content).decode()),)


async def fill_queue(config: dict[str, Any], count: int, body: str = "x" * 2000, *,
                     attachment: int = 0) -> float:
    """Queue `count` messages in-process (nothing delivers meanwhile); the rate. With
    `attachment` > 0, each message also carries that many bytes as an attachment."""
    configure_logging(LoggingSettings(level="warning"))
    outbox = await Outbox.open(Settings(**config))
    started = time.perf_counter()
    try:
        for start in range(0, count, 100):
            await asyncio.gather(*(outbox.messages.submit(Submission(
                sender="bench@example.test", to=f"user{n}@example.test", subject=f"Bench {n}",
                text=body, attachments=attachments(n, attachment)))
                for n in range(start, min(start + 100, count))))
    finally:
        await outbox.close()
    return count / (time.perf_counter() - started)


def drain(config_path: Path, counts: Path, before: int, count: int) -> float:
    worker = subprocess.Popen([sys.executable, "-m", "outbox", "worker", "--config",
                               str(config_path)])
    try:
        first = last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            delivered = sink_count(counts) - before
            now = time.perf_counter()
            if delivered > 0 and first is None:
                first = now
            if delivered >= count:
                last = now
                break
            time.sleep(0.02)
        if first is None or last is None:
            raise SystemExit("the backlog did not drain within 10 minutes")
        return count / max(last - first, 1e-9)
    finally:
        worker.terminate()
        worker.wait(30)


def run(backend: str, count: int, port: int, counts: Path, directory: Path) -> None:
    database = (nullcontext(f"sqlite:///{directory}/{backend}.db") if backend == "sqlite"
                else fresh_database("outbox_bench"))
    with database as url:
        config = config_for(url, port, directory)
        path = write_config(directory / f"{backend}.toml", config)
        accept_rate = asyncio.run(fill_queue(config, count))
        time.sleep(0.6)  # the sink rewrites its counters every 0.5 s
        before = sink_count(counts)
        rate = drain(path, counts, before, count)
        print(f"{backend:9s} {count} messages of 2 KB, 4 connections: drained at {rate:,.0f} "
              f"msg/s (queue filled in-process at {accept_rate:,.0f} msg/s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sink, port, counts = start_sink(directory)
        stack.callback(sink.wait, 10)
        stack.callback(sink.terminate)  # first: callbacks run last in, first out
        print(f"machine: {os.cpu_count()} cores; sink on 127.0.0.1:{port}", flush=True)
        for backend in args.backends.split(","):
            run(backend, args.messages, port, counts, directory)


if __name__ == "__main__":
    main()
