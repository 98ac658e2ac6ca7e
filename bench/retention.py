"""Retention beside delivery: delivery throughput while 100,000 old messages are
purged, against the same run with retention off, and the database bytes per 1,000
delivered messages (SQLite).

    .venv/bin/python bench/retention.py [--old 100000] [--new 5000] [--batch 500]

1. Deliver --templates real messages through `outbox serve` to a loopback sink; the
   file's growth per 1,000 is the "bytes per 1,000 messages" figure (messages,
   recipients, attempts with transcripts, events, indexes; after a checkpoint).
2. Copy those finished messages into --old messages stamped 3 days ago.
3. Twice, on copies of that file: queue --new messages, start `outbox serve`, time
   until all are sent; once with `[storage] keep_history = "0s"` (kept forever: no
   purge), once with "1d" (the old ones are purged in batches of --batch meanwhile).
   Prints both rates, how much of the purge ran during delivery, the purge's total
   time, and the file size before and after (incremental vacuum). No assertions.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.dbsql import scalar  # noqa: E402
from tests.e2e.support import fill_queue, relay_for, wait_all_sent  # noqa: E402
from tests.history import plant_old_copies  # noqa: E402
from tests.processes import OutboxProcess, base_config, write_config  # noqa: E402
from tests.smtpd import ScriptedServer  # noqa: E402


def file_bytes(path: Path) -> int:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = db.execute("PRAGMA page_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    return int(count) * int(size)


def config_for(directory: Path, sink: ScriptedServer, keep: str, batch: int) -> dict[str, Any]:
    url = f"sqlite:///{directory}/outbox.db"
    return base_config(directory, url, [relay_for(sink, max_connections=8)],
                       logging={"level": "warning", "format": "json",
                                "file": str(directory / "outbox.log")},
                       delivery={"poll_interval": "100ms", "concurrency": 32},
                       storage={"blob_dir": str(directory / "blobs"), "keep_history": keep,
                                "purge_every": "1s", "purge_batch": batch})


def templates(directory: Path, sink: ScriptedServer, count: int) -> float:
    """Deliver `count` messages; the file's bytes per 1,000 of them."""
    config = config_for(directory, sink, "0s", 500)
    url = config["database"]["url"]
    fill_queue(config, 0)
    empty = file_bytes(directory / "outbox.db")
    fill_queue(config, count)
    outbox = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
    wait_all_sent(url, count, timeout=600)
    outbox.stop()
    return (file_bytes(directory / "outbox.db") - empty) / (count / 1000)


def timed_run(directory: Path, sink: ScriptedServer, keep: str, new: int,
              batch: int) -> dict[str, float]:
    config = config_for(directory, sink, keep, batch)
    url = config["database"]["url"]
    path = directory / "outbox.db"
    old_before = int(scalar(url, "SELECT count(*) FROM messages WHERE id LIKE 'old%'"))
    fill_queue(config, new)
    before = file_bytes(path)
    outbox = OutboxProcess(write_config(directory / "outbox.toml", config), config)
    start = time.monotonic()
    outbox.start(wait=False)
    sent_at = purged_at = None
    old_at_sent = old_before
    while sent_at is None or (keep != "0s" and purged_at is None):
        time.sleep(0.2)
        old = int(scalar(url, "SELECT count(*) FROM messages WHERE id LIKE 'old%'"))
        done = int(scalar(url, "SELECT count(*) FROM messages WHERE status = 'sent' "
                               "AND id NOT LIKE 'old%'"))
        now = time.monotonic() - start
        if purged_at is None and old == 0:
            purged_at = now
        if sent_at is None and done >= new + TEMPLATES_SENT[0]:
            sent_at, old_at_sent = now, old
    time.sleep(3)  # let the vacuum give pages back
    outbox.stop()
    window = delivery_window(path)
    return {"seconds": window, "rate": new / window, "purged_at": purged_at or 0.0,
            "purged_during": old_before - old_at_sent, "before": before,
            "after": file_bytes(path)}


TEMPLATES_SENT = [0]


def delivery_window(path: Path) -> float:
    """Seconds from the first claim of a new message to its last `sent` event (the
    process's start-up is not delivery)."""
    with sqlite3.connect(path) as db:
        first, last = db.execute(
            "SELECT min(CASE WHEN type = 'claimed' THEN at END), "
            "max(CASE WHEN type = 'sent' THEN at END) FROM events "
            "WHERE message_id NOT LIKE 'old%' AND at > (SELECT max(at) FROM events "
            "WHERE type = 'queued' AND message_id NOT LIKE 'old%') ").fetchone()
    from datetime import datetime

    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=5000)
    parser.add_argument("--templates", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    TEMPLATES_SENT[0] = args.templates
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer() as sink:
        base = Path(tmp) / "base"
        base.mkdir()
        per_1000 = templates(base, sink, args.templates)
        print(f"database bytes per 1,000 delivered messages: {per_1000:,.0f} "
              f"({args.templates:,} delivered, 1 recipient, 200-byte body)")
        started = time.monotonic()
        plant_old_copies(str(base / "outbox.db"), args.old, timedelta(days=3))
        print(f"planted {args.old:,} old finished messages in "
              f"{time.monotonic() - started:.0f}s; file {file_bytes(base / 'outbox.db'):,} B")
        for keep, label in (("0s", "retention off"), ("1d", "purging meanwhile")):
            run = Path(tmp) / keep
            shutil.copytree(base, run, ignore=shutil.ignore_patterns("*.toml", "*.log",
                                                                     "*-workers"))
            result = timed_run(run, sink, keep, args.new, args.batch)
            line = (f"{label:<18} {args.new:,} delivered in {result['seconds']:.1f}s = "
                    f"{result['rate']:,.0f} msg/s")
            if keep != "0s":
                line += (f"; {result['purged_during']:,.0f} of {args.old:,} old purged "
                         f"during delivery, all of them after {result['purged_at']:.1f}s; "
                         f"file {result['before']:,} B -> {result['after']:,} B")
            print(line, flush=True)


if __name__ == "__main__":
    main()
