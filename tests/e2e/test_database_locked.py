"""Another process holds the SQLite database's write lock (the seed's S8/S9 walk).

A tester held `BEGIN EXCLUSIVE` on outbox.db for 40 s from a second process: POST
/v1/messages hung 39 s and then answered 202, and /healthz said 200 for about 30 s,
until the sweep loop failed on "database is locked". Reads go on beside the lock
(WAL), so the ping saw nothing. Now /healthz names the lock while writes wait for it,
and a submit that no transaction has taken after `SUBMIT_WAIT` is refused with 503
and Retry-After, and never stored. Real `outbox serve`, a real second process holding
the lock (tests/lockers.py); no timing is asserted, only what each answer says."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.dbsql import scalar, sqlite_path
from tests.e2e.conftest import Starter
from tests.lockers import SqliteLocker
from tests.processes import TLS, wait_until
from tests.smtpd import ScriptedServer

BODY = {"from": "shop@example.test", "to": "ann@example.test", "text": "hi"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a SQLite lock
def test_a_write_lock_held_elsewhere_is_in_healthz_and_refuses_submits(
        start_outbox: Starter, database_url: str) -> None:
    with ScriptedServer() as sink:
        relay = {"name": "default", "host": "127.0.0.1", "port": sink.port, "security": "none"}
        outbox = start_outbox([relay])
        with outbox.client() as client:
            first = client.post("/v1/messages", json={**BODY, "subject": "before"})
            assert first.status_code == 202, first.text
            wait_until(lambda: len(sink.messages) == 1, timeout=30, message="the first sent")

        def health() -> tuple[int, Any]:
            answer = httpx.get(f"{outbox.base_url}/healthz", timeout=10, verify=TLS)
            return answer.status_code, answer.json()

        answers: list[httpx.Response] = []

        def submit() -> None:
            with outbox.client() as client:
                answers.append(client.post("/v1/messages", json={**BODY, "subject": "locked"}))

        with SqliteLocker(sqlite_path(database_url)):
            submitting = threading.Thread(target=submit)
            submitting.start()
            _, body = wait_until(lambda: (answer := health())[0] == 503 and answer,
                                 timeout=60, message="/healthz to answer 503")
            submitting.join(timeout=120)
            assert not submitting.is_alive()
        reasons = " | ".join(body["problems"])
        assert "the database has been locked by another process for " in reasons, reasons
        assert "writes wait" in reasons
        (refused,) = answers
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "database_unavailable"
        assert int(refused.headers["Retry-After"]) > 0
        assert "nothing was stored" in refused.json()["error"]["message"]

        with outbox.client() as client:
            after = client.post("/v1/messages", json={**BODY, "subject": "after"})
            assert after.status_code == 202, after.text
            wait_until(lambda: len(sink.messages) == 2, timeout=60,
                       message="the message sent after the lock was released")
            wait_until(lambda: health()[0] == 200, timeout=30, message="/healthz 200 again")
            # The refused submit was withdrawn before any transaction took it: not stored,
            # even once the writes it waited behind went through.
            listed = client.get("/v1/messages").json()["messages"]
        assert sorted(m["subject"] for m in listed) == ["after", "before"]
        assert scalar(database_url, "SELECT count(*) FROM messages") == "2"
        assert [b"Subject: locked" in m.data for m in sink.messages] == [False, False]
