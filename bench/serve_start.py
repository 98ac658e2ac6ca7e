"""What a new `outbox serve` spends on its first requests, and on getting there.

    .venv/bin/python bench/serve_start.py [--reps 5] [--backends sqlite]
                                          [--baseline-src DIR]

Starts `outbox serve` (a real exec; the set-up of bench/abuse.py) --reps times and
prints, from the serve process's CPU time (/proc, user + system): the CPU until
/healthz first answers, and the CPU of its first requests a client makes: one
POST /v1/messages, a GET of that message, then a GET of a path no client needs
first (/v1/contacts). Stop 25 found the first templated GET building the whole
OpenAPI document (0.37 s) and the first probe building every route (0.23 s). With
--baseline-src, the same for the code under that directory, start by start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.processes import API_KEY  # noqa: E402

from bench.abuse import serve, small  # noqa: E402
from bench.submit_cost import cpu_seconds  # noqa: E402


def one_start(backend: str, env: dict[str, str]) -> tuple[float, float, float]:
    """(CPU until healthy, CPU of POST + GET of a message, CPU of a GET elsewhere)."""
    with serve(backend, env) as outbox:
        assert outbox.proc is not None
        pid = outbox.proc.pid
        healthy = cpu_seconds(pid)
        with httpx.Client(base_url=outbox.base_url, timeout=30,
                          headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            accepted = http.post("/v1/messages", json=small(1))
            assert accepted.status_code == 202, accepted.text
            assert http.get(f"/v1/messages/{accepted.json()['id']}").status_code == 200
            first = cpu_seconds(pid)
            assert http.get("/v1/contacts").status_code == 200
            elsewhere = cpu_seconds(pid)
    return healthy, first - healthy, elsewhere - first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--baseline-src", default=os.environ.get("BASELINE_SRC"))
    args = parser.parse_args()
    runs = [("", {})] + ([(" (baseline)", {"PYTHONPATH": args.baseline_src})]
                         if args.baseline_src else [])
    for backend in args.backends.split(","):
        found: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _ in runs}
        for _ in range(args.reps):
            for label, env in runs:  # interleaved, so that drift hits both alike
                found[label].append(one_start(backend, env))
        for label, starts in found.items():
            columns = list(zip(*starts, strict=True))
            print(f"{backend}{label}: CPU until healthy {statistics.median(columns[0]):.3f} s; "
                  f"first POST + GET of a message {statistics.median(columns[1]):.3f} s; "
                  f"first GET /v1/contacts {statistics.median(columns[2]):.3f} s "
                  f"(medians of {len(starts)} starts)", flush=True)


if __name__ == "__main__":
    main()
