"""Web UI page times with a large queue: p50 / p95 of each page, signed in, against a
real `outbox serve` on SQLite and PostgreSQL.

    .venv/bin/python bench/ui.py [--messages 100000] [--requests 40] [--backends sqlite,postgres]

The queue is filled in-process (the service's batch submit, before `serve` starts); a
third of the messages are marked sent and a tenth failed, with events of the last hour,
so that the dashboard's counts and chart read real rows. The relay is a closed port, so
nothing is delivered meanwhile. On PostgreSQL the tables are then vacuumed, as
autovacuum does by itself soon after such a fill (`--unvacuumed` measures before).
Each page is fetched `--requests` times in a row over one keep-alive connection.
Prints figures; no assertions (the issue's target: every page < 100 ms at p95 with
100,000 messages).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.dbsql import sql  # noqa: E402
from tests.pg import fresh_database  # noqa: E402
from tests.processes import OutboxProcess, free_port, write_config  # noqa: E402

from outbox.config import LoggingSettings, Settings  # noqa: E402
from outbox.core.compose import Submission  # noqa: E402
from outbox.observability import configure_logging  # noqa: E402
from outbox.service import Outbox  # noqa: E402
from outbox.service.messages import BatchItem  # noqa: E402

PASSWORD = "bench password 123"


def config_for(url: str, directory: Path) -> dict[str, Any]:
    return {
        "server": {"bind": f"127.0.0.1:{free_port()}"},
        "database": {"url": url},
        "logging": {"level": "warning", "file": str(directory / "outbox.log")},
        "storage": {"blob_dir": str(directory / "blobs")},
        "relays": [{"name": "default", "host": "127.0.0.1", "port": free_port(),
                    "security": "none"}],
    }


async def fill(config: dict[str, Any], count: int) -> float:
    configure_logging(LoggingSettings(level="warning"))
    outbox = await Outbox.open(Settings(**{k: v for k, v in config.items() if k != "logging"}))
    started = time.perf_counter()
    try:
        await outbox.users.create("bench", "admin", PASSWORD)
        for start in range(0, count, 500):
            await outbox.messages.submit_many([BatchItem(Submission(
                sender="bench@example.test", to=f"user{n}@example.test", subject=f"Bench {n}",
                text="x" * 500)) for n in range(start, min(start + 500, count))])
    finally:
        await outbox.close()
    return count / (time.perf_counter() - started)


def age_some(url: str) -> None:
    """A third sent and a tenth failed, each with an event in the last hour."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # as UtcDateTime stores it
    now = "now()" if url.startswith("postgresql") else f"'{stamp}'"
    for status, modulo in (("sent", 3), ("failed", 10)):
        pick = f"(SELECT id FROM messages WHERE status = 'queued' " \
               f"ORDER BY id LIMIT (SELECT count(*) / {modulo} FROM messages))"
        sql(url, f"INSERT INTO events (message_id, at, type, detail) SELECT id, {now}, "
                 f"'{status}', '' FROM messages WHERE id IN {pick}")
        sql(url, f"UPDATE messages SET status = '{status}', due_at = NULL WHERE id IN "
                 f"(SELECT message_id FROM events WHERE type = '{status}')")


def sign_in(client: httpx.Client) -> None:
    form = client.get("/ui/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None
    answer = client.post("/ui/login", data={"name": "bench", "password": PASSWORD,
                                            "csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text


def pages(client: httpx.Client) -> dict[str, str]:
    listing = client.get("/ui/messages").text
    first = re.search(r'href="/ui/messages/([^"?]+)"', listing)
    cursor = re.search(r'cursor=([^"]+)"', listing)
    assert first is not None and cursor is not None
    return {"dashboard": "/ui/", "dashboard live": "/ui/dashboard/live",
            "messages": "/ui/messages", "messages page 2":
            f"/ui/messages?cursor={cursor.group(1).replace('&amp;', '&')}",
            "messages deferred": "/ui/messages?status=deferred",
            "message": f"/ui/messages/{first.group(1)}", "compose": "/ui/compose",
            "relays": "/ui/relays", "suggest": "/ui/compose/suggest?q=us",
            "retry all deferred (confirm)": "/ui/messages/matching?action=retry&status=deferred",
            "alerts": "/ui/alerts", "api keys": "/ui/keys", "settings": "/ui/settings",
            "contacts": "/ui/contacts", "groups": "/ui/groups", "directory": "/ui/directory"}


def measure(client: httpx.Client, path: str, requests: int) -> tuple[float, float]:
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    times.sort()
    return statistics.median(times), times[max(0, round(len(times) * 0.95) - 1)]


def run(backend: str, count: int, requests: int, unvacuumed: bool = False) -> None:
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = (f"sqlite:///{directory}/outbox.db" if backend == "sqlite"
               else stack.enter_context(fresh_database()))
        config = config_for(url, directory)
        rate = asyncio.run(fill(config, count))
        age_some(url)
        print(f"{backend}: {count:,} messages filled at {rate:,.0f} msg/s", flush=True)
        if backend == "postgres" and not unvacuumed:
            # What autovacuum does on its own within a minute or so of such a fill (its
            # insert threshold): until then counts by status read the heap, not the index.
            sql(url, "VACUUM ANALYZE")
            print("  (after VACUUM ANALYZE)", flush=True)
        process = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
        stack.callback(process.stop)
        with httpx.Client(base_url=process.base_url, timeout=60) as client:
            sign_in(client)
            for name, path in pages(client).items():
                client.get(path)  # warm
                p50, p95 = measure(client, path, requests)
                print(f"  {name:<18} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--unvacuumed", action="store_true",
                        help="PostgreSQL: measure right after the fill, before any vacuum")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        run(backend, args.messages, args.requests, args.unvacuumed)


if __name__ == "__main__":
    main()
