"""What bench/hold_release.py and bench/busy_claim.py share: for each backend, a fresh
database with a queue filled in-process, one measure of it printed line by line, and
with --baseline-src the same script again on that source tree."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.processes import base_config  # noqa: E402

from bench.compare import database  # noqa: E402
from bench.throughput import fill_queue  # noqa: E402


def arguments(description: str, messages: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--messages", type=int, default=messages)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--baseline-src", default=os.environ.get("BASELINE_SRC"))
    return parser.parse_args()


def each_backend(script: str, args: argparse.Namespace, relay: str,
                 measure: Callable[[str], Awaitable[list[str]]], baseline_env: str) -> None:
    """`args.messages` queued for `relay` (900-byte bodies, nothing delivering), then
    `measure(url)`'s lines, each under the backend's name."""
    label = " (baseline)" if os.environ.get(baseline_env) else ""
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp, database(backend, Path(tmp)) as url:
            relays = [{"name": relay, "host": "127.0.0.1", "port": 2525, "security": "none"}]
            config = base_config(Path(tmp), url, relays, logging={"level": "warning"})
            asyncio.run(fill_queue(config, args.messages, "x" * 900))
            for line in asyncio.run(measure(url)):
                print(f"{backend}{label}: {line}", flush=True)
        if args.baseline_src:
            env = {**os.environ, "PYTHONPATH": args.baseline_src, baseline_env: "1"}
            subprocess.run([sys.executable, script, "--messages", str(args.messages),
                            "--backends", backend], env=env, check=True)
