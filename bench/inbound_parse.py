"""What reading one submitted message costs the SMTP listener's event loop: CPU time of
`core.inbound.read_message` per message, on messages like smtp-source's (1 KB, plain
text, every Message-ID, Date and To different).

    .venv/bin/python bench/inbound_parse.py [--messages 3000] [--reps 3]
                                            [--baseline-src DIR]

--baseline-src runs the same with that source tree first on PYTHONPATH, before this
tree's, so two commits compare in one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def messages(count: int) -> list[bytes]:
    return [(f"From: <sender@example.com>\r\nTo: <rcpt{n}@example.net>\r\n"
             f"Date: Fri, 4 Dec 2026 21:{n % 60:02d}:{n % 59:02d} +0000\r\n"
             f"Message-Id: <{n}.{os.getpid()}@anchors.localdomain>\r\nSubject: Bench {n}\r\n"
             "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
             ).encode() + b"La de da de da.\r\n" * 50 for n in range(count)]


def run_here(count: int, reps: int, label: str) -> None:
    from outbox.core.inbound import Envelope, read_message

    envelope = Envelope("sender@example.com", ["rcpt@example.net"])
    for rep in range(1, reps + 1):
        batch = messages(count)
        started = time.process_time()
        for raw in batch:
            read_message(raw, envelope)
        spent = time.process_time() - started
        print(f"rep {rep}{label}: read_message {spent / count * 1e6:.0f} us of CPU per "
              f"message ({count:,} messages)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--baseline-src", default=os.environ.get("BASELINE_SRC"))
    parser.add_argument("--label", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_src:
        argv = [sys.executable, __file__, "--messages", str(args.messages), "--reps",
                str(args.reps), "--label", " (baseline)"]
        subprocess.run(argv, check=True, env={**os.environ, "PYTHONPATH": args.baseline_src})
    run_here(args.messages, args.reps, args.label)


if __name__ == "__main__":
    main()
