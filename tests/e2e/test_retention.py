"""Retention while delivering (issue 14): finished history past `[storage]
keep_history` is purged in batches of `purge_batch` rows while `outbox serve`
delivers, the database file shrinks (incremental vacuum), and idempotency keys are
forgotten after `[auth] idempotency_ttl`.

The issue's bench figure is a purge of 100,000 old messages (bench/retention.py);
this test purges 4,000 in batches of 200 so that it takes seconds, not minutes.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from tests.dbsql import scalar
from tests.e2e.support import fill_queue, relay_for, wait_all_sent
from tests.history import plant_old_copies
from tests.processes import OutboxProcess, base_config, wait_until, write_config
from tests.smtpd import ScriptedServer, delay

OLD = 4000
BATCH = 200
NEW = 300


def pages(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA page_count").fetchone()[0])


def old_count(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM messages WHERE id LIKE 'old%'"))


def new_sent(url: str) -> int:
    """Sent messages that are not old copies, less the 20 templates."""
    return int(scalar(url, "SELECT count(*) FROM messages WHERE status = 'sent' AND "
                           "id NOT LIKE 'old%'")) - 20


def test_history_is_purged_in_batches_while_delivery_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    url = f"sqlite:///{path}"
    with ScriptedServer(script=[delay("DATA", 0.02)]) as sink:
        config = base_config(tmp_path, url, [relay_for(sink)],
                             storage={"blob_dir": str(tmp_path / "blobs"),
                                      "keep_history": "1d", "purge_every": "300ms",
                                      "purge_batch": BATCH},
                             auth={**base_config(tmp_path, url, [])["auth"],
                                   "idempotency_ttl": "2s"})
        outbox = OutboxProcess(write_config(tmp_path / "outbox.toml", config), config)
        outbox.start()  # deliver a few real messages: the templates of the old history
        fill_queue(config, 20)
        wait_all_sent(url, 20, timeout=60, what="(templates)")
        outbox.stop()
        assert scalar(url, "PRAGMA auto_vacuum") == "2"  # incremental, set at creation
        plant_old_copies(str(path), OLD, timedelta(days=3))
        fill_queue(config, NEW)
        before = pages(path)

        outbox.start(wait=False)
        samples: list[tuple[int, int]] = []  # (old messages left, new ones sent)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left, sent = old_count(url), new_sent(url)
            samples.append((left, sent))
            if left == 0 and sent == NEW:
                break
            time.sleep(0.05)
        outbox.wait_healthy()

        assert samples[-1] == (0, NEW), samples[-5:]
        assert all((OLD - left) % BATCH == 0 for left, _ in samples), "whole batches only"
        assert len({left for left, _ in samples if 0 < left < OLD}) >= 3, samples
        assert any(0 < left < OLD and 0 < sent < NEW for left, sent in samples), (
            "delivery should go on while the purge is under way", samples[::10])
        assert scalar(url, "SELECT count(*) FROM events WHERE message_id LIKE 'old%'") == "0"
        wait_until(lambda: pages(path) < before * 0.6, timeout=30,
                   message="the file to shrink (incremental vacuum)")

        with outbox.client() as client:
            body = {"from": "a@example.test", "to": "b@example.test", "subject": "s",
                    "text": "t"}
            first = client.post("/v1/messages", json=body, headers={"Idempotency-Key": "k1"})
            replay = client.post("/v1/messages", json=body, headers={"Idempotency-Key": "k1"})
            assert (first.status_code, replay.status_code) == (202, 200)
            assert replay.json()["id"] == first.json()["id"]
            wait_until(lambda: scalar(url, "SELECT count(*) FROM messages WHERE "
                                           "idempotency_key = 'k1'") == "0",
                       timeout=15, message="the key to be forgotten after its ttl")
            later = client.post("/v1/messages", json=body, headers={"Idempotency-Key": "k1"})
            assert later.status_code == 202 and later.json()["id"] != first.json()["id"]
        outbox.stop()
