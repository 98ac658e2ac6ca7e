"""Faults in what Outbox depends on, injected for real (issue 10, STYLE principle 13).

SPEC §3: "A fault in a dependency (the database restarts or is locked, a relay
stalls mid-DATA, a delivery raises) never stops delivery for good and never leaves
a message in `sending`: the worker backs off and carries on, and `/healthz` says
what is wrong meanwhile."

PostgreSQL is restarted in a cluster of the test's own (tests/pgcluster.py), SQLite
is locked by another process (tests/lockers.py), stored content is broken and the
attempts table blocked with SQL, and a second worker runs ten minutes ahead under
libfaketime. Lease and sweep interval stay at their production defaults.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.dbsql import sql, sqlite_path
from tests.e2e.support import (
    HealthRecorder,
    claims,
    events,
    get_message,
    relay_for,
    statuses,
    submit_many,
    wait_all_sent,
)
from tests.lockers import SqliteLocker
from tests.pg import fresh_database
from tests.pgcluster import PgCluster
from tests.processes import OutboxProcess, base_config, wait_until, write_config
from tests.smtpd import ScriptedServer, delay, drop

BUSY_TIMEOUT = 30.0  # seconds: outbox.store.sqlite.BUSY_TIMEOUT_MS


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the database goes away ---------------------------------------------------------------

@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    with PgCluster.create() as cluster:
        yield cluster


def test_postgresql_restart_mid_delivery(tmp_path: Path, own_cluster: PgCluster,
                                         launch: Any) -> None:
    total = 300
    url = own_cluster.create_database("outbox")
    with ScriptedServer(script=[delay("DATA", 0.05)]) as sink:
        outbox: OutboxProcess = launch(base_config(tmp_path, url, [relay_for(sink)]))
        health = HealthRecorder(outbox)
        try:
            submitted = submit_many(outbox, total)
            wait_until(lambda: len(sink.messages) >= 60, timeout=60, message="60 deliveries")
            health.start()
            at_restart = len(sink.messages)
            began = time.monotonic()
            # pg_ctlcluster stop (a fast shutdown), then start once /healthz has said 503:
            # a plain `restart` is down for about half a second, which a loaded machine's
            # slower /healthz answers could miss entirely.
            own_cluster.stop()
            wait_until(lambda: bool(health.unavailable()), timeout=30,
                       message="/healthz to answer 503 while PostgreSQL is down")
            own_cluster.start()
            restarted_in = time.monotonic() - began
            wait_all_sent(url, total, timeout=120, what="after the restart")
            # The recorder's own answer: one asked apart from it could come in between
            # its last 503 and its next look, and the mail may all be sent by then.
            wait_until(lambda: health.answers[-1][1] == 200, timeout=30,
                       message="/healthz to be 200 again")
            health.stop()
            uncertain = events(url, "uncertain")
        finally:
            health.stop()
    outage = health.unavailable()
    print(f"\nPostgreSQL restarted ({restarted_in:.1f}s) after {at_restart} of {total} "
          f"deliveries; /healthz: {health.summary()}; first 503: "
          f"{outage[0] if outage else None}; {sink.duplicates} duplicates, "
          f"{len(uncertain)} uncertain events")
    assert at_restart < total, "the restart should land mid-delivery"
    assert outage, f"/healthz never answered 503 during the outage: {health.summary()}"
    assert all(body.get("status") == "unavailable" and body.get("problems") for body in outage)
    assert health.answers[-1][1] == 200
    assert set(sink.message_ids) == set(submitted.values())
    assert sink.duplicates <= len(uncertain)


@pytest.mark.long(36)
@pytest.mark.parametrize("processes", [0, "auto"])  # auto: /healthz from the child's
def test_sqlite_locked_by_another_process_past_the_busy_timeout(
        launch: Any, tmp_path: Path, processes: int | str) -> None:
    total = 100
    url = f"sqlite:///{tmp_path}/locked.db"
    # DATA replies take 200 ms (about 20 messages/s over 4 connections): the lock lands
    # on a busy worker, every relay session taken, as in a backlog.
    with ScriptedServer(script=[delay("DATA", 0.2)]) as sink:
        config = base_config(tmp_path, url, [relay_for(sink)],
                             delivery={"processes": processes})
        outbox: OutboxProcess = launch(config)
        health = HealthRecorder(outbox, interval=0.5)
        try:
            submitted = submit_many(outbox, total)
            wait_until(lambda: len(sink.messages) >= 20, timeout=60, message="20 deliveries")
            with SqliteLocker(sqlite_path(url)):
                locked_at = len(sink.messages)
                health.start()
                # Held past the busy timeout, until /healthz reports it. Writes go
                # through one writer thread: the first to fail may be a non-critical
                # loop's (a warning), and a result's write waits behind it for its own
                # busy timeout; hence two timeouts and 20 s more at most.
                deadline = time.monotonic() + 2 * BUSY_TIMEOUT + 20
                while not health.unavailable() and time.monotonic() < deadline:
                    time.sleep(0.5)
                during = len(sink.messages)
            wait_all_sent(url, total, timeout=120, what="after the lock was released")
            # The recorder's own answer: one asked apart from it could come in between
            # its last 503 and its next look, and the mail may all be sent by then.
            wait_until(lambda: health.answers[-1][1] == 200, timeout=30,
                       message="/healthz to be 200 again")
            health.stop()
            uncertain = events(url, "uncertain")
        finally:
            health.stop()
    outage = health.unavailable()
    print(f"\nSQLite locked after {locked_at} of {total} deliveries ({during} "
          f"at release); /healthz: {health.summary()}; first 503: "
          f"{outage[0] if outage else None}; "
          f"{sink.duplicates} duplicates, {len(uncertain)} uncertain events")
    assert locked_at < total
    assert health.answers[-1][1] == 200
    assert set(sink.message_ids) == set(submitted.values())
    assert sink.duplicates <= len(uncertain)
    assert outage, (f"/healthz never answered 503 while the database was locked for writes "
                    f"past the busy timeout: {health.summary()}")
    assert all(body.get("status") == "unavailable" and body.get("problems") for body in outage)


# --- a delivery that raises ---------------------------------------------------------------

BROKEN_FILE = ('[{"filename": "broken.txt", "content_type": "text/plain", '
               '"content_base64": "abc"}]')


def _break_content(url: str, ids: list[str]) -> None:
    """Give the stored content an embedded file whose base64 is cut short: the
    message still loads and reads fine in the API, but writing its MIME raises
    (binascii.Error: incorrect padding)."""
    listed = ", ".join(f"'{id}'" for id in ids)
    if url.startswith("sqlite"):
        sql(url, f"UPDATE messages SET content = json_set(content, '$.attachments', "
                 f"json('{BROKEN_FILE}')) WHERE id IN ({listed})")
    else:
        sql(url, f"UPDATE messages SET content = jsonb_set(content::jsonb, '{{attachments}}', "
                 f"'{BROKEN_FILE}'::jsonb)::json WHERE id IN ({listed})")
    for (content,) in sql(url, f"SELECT content FROM messages WHERE id IN ({listed})"):
        assert "broken.txt" in content, content


def _wait_message(outbox: OutboxProcess, id: str, attempts: int, status: str,
                  timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = get_message(outbox, id)
        if message["attempts"] == attempts and message["status"] == status:
            return message
        if time.monotonic() > deadline:
            raise AssertionError(
                f"try {attempts} did not end {status} within {timeout:.0f}s: the message is "
                f"{message['status']} after {message['attempts']} attempts; events "
                f"{[e['type'] for e in message['events']]}")
        time.sleep(0.1)


def test_stored_content_that_cannot_be_built_releases_the_claim_at_once(
        tmp_path: Path, database_url: str, start_outbox: Any) -> None:
    with ScriptedServer() as sink:
        # first_delay is an hour so that no try happens by itself: the test drives each
        # one with POST /retry (which is also under test). max_attempts 3 keeps it short.
        config = base_config(tmp_path, database_url, [relay_for(sink)],
                             retry={"first_delay": "1h", "max_delay": "1h", "max_attempts": 3})
        # Queued with `outbox send` while no worker runs; then broken in the database.
        queuer = OutboxProcess(write_config(tmp_path / "queue.toml", config), config)
        assert queuer.cli("migrate").returncode == 0  # tests/pg.py migrated it already
        ids = []
        for n in range(2):
            sent = queuer.cli("send", "--from", "a@example.test", "--to",
                              f"broken{n}@example.test", "--subject", "s", "--text", "t")
            assert sent.returncode == 0, sent.stderr
            ids.append(sent.stdout.strip().splitlines()[-1])
        _break_content(database_url, ids)
        poison, other = ids

        outbox: OutboxProcess = start_outbox([], config=config)
        with outbox.client() as client:
            for attempt in range(1, 4):
                expected = "failed" if attempt == 3 else "deferred"

                message = _wait_message(outbox, poison, attempt, expected)
                if attempt < 3:
                    retried = client.post(f"/v1/messages/{poison}/retry")
                    assert retried.status_code == 200, retried.text
            wait_until(lambda: get_message(outbox, other)["status"] == "deferred", timeout=15,
                       message="the other broken message to be deferred")
            cancelled = client.post(f"/v1/messages/{other}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
    timeline = message["events"]
    print("\n" + "\n".join(f"{e['at']} {e['type']:9} {e.get('detail', '')}" for e in timeline))
    claimed = [e for e in timeline if e["type"] == "claimed"]
    ended = [e for e in timeline if e["type"] in ("deferred", "failed")]
    assert len(claimed) == 3 and len(ended) == 3, timeline
    for start, end in zip(claimed, ended, strict=True):
        took = (_at(end["at"]) - _at(start["at"])).total_seconds()
        # "At once" against the 5-minute lease it would otherwise wait for; a loaded
        # machine can spend a few seconds in the first try's imports.
        assert took <= 10.0, f"try {start['attempt']} held its claim {took:.1f}s"
    explained = " ".join(f"{e.get('detail') or ''} {e.get('guidance') or ''}" for e in ended)
    assert "delivery failed inside outbox" in explained.lower(), ended
    assert not [e for e in timeline if e["type"] == "uncertain"], "nothing reached a relay"
    assert sink.messages == [] and "MAIL" not in sink.commands


def _block_attempts(url: str) -> None:
    if url.startswith("sqlite"):
        sql(url, "CREATE TRIGGER outbox_test_block BEFORE INSERT ON attempts "
                 "BEGIN SELECT RAISE(ABORT, 'outbox_test_block: the test blocks attempts'); END")
    else:
        sql(url, "ALTER TABLE attempts ADD CONSTRAINT outbox_test_block CHECK (false) NOT VALID")


def _unblock_attempts(url: str) -> None:
    if url.startswith("sqlite"):
        sql(url, "DROP TRIGGER outbox_test_block")
    else:
        sql(url, "ALTER TABLE attempts DROP CONSTRAINT outbox_test_block")


def test_a_result_that_cannot_be_recorded_is_recorded_later_without_a_resend(
        database_url: str, start_outbox: Any) -> None:
    # The relay answers the first DATA after 1.5 s: time to block the attempts table
    # (a CHECK (false) constraint on PostgreSQL, a RAISE trigger on SQLite) first.
    with ScriptedServer(script=[delay("DATA", 1.5, times=1)]) as sink:
        outbox: OutboxProcess = start_outbox([relay_for(sink)])
        with outbox.client() as client:
            accepted = client.post("/v1/messages", json={
                "from": "a@example.test", "to": "record@example.test", "text": "x"}).json()
        wait_until(lambda: "DATA" in sink.commands, message="the DATA command")
        _block_attempts(database_url)
        try:
            wait_until(lambda: sink.message_ids[accepted["message_id"]] == 1, timeout=15,
                       message="the relay to accept the message")
            time.sleep(2.0)  # the worker tries to record the result, and cannot
            blocked = statuses(database_url)[accepted["id"]]
        finally:
            _unblock_attempts(database_url)
        unblocked = time.monotonic()
        try:
            wait_until(lambda: statuses(database_url)[accepted["id"]] == "sent", timeout=60,
                       message="the result to be recorded")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: the message is still "
                                 f"{statuses(database_url)[accepted['id']]}") from None
        recorded_in = time.monotonic() - unblocked
        message = get_message(outbox, accepted["id"])
        time.sleep(1.0)  # a resend would follow at once
    types = [e["type"] for e in message["events"]]
    print(f"\nwhile blocked: {blocked}; recorded {recorded_in:.1f}s after the block went; "
          f"events {types}; {len(sink.messages)} copies at the relay")
    assert blocked == "sending", "the block should have stopped the result being recorded"
    # Recording backs off (at most 30 s between tries), far below the 5-minute lease.
    assert recorded_in <= 35
    assert message["status"] == "sent" and message["attempts"] == 1
    assert types.count("sent") == 1 and "uncertain" not in types
    assert sink.message_ids[accepted["message_id"]] == 1 and len(sink.messages) == 1


def test_a_relay_that_hangs_up_mid_rcpt_defers_then_sends(database_url: str,
                                                          start_outbox: Any) -> None:
    with ScriptedServer(script=[drop("RCPT", times=1)]) as sink:
        outbox: OutboxProcess = start_outbox([relay_for(sink)])
        with outbox.client() as client:
            accepted = client.post("/v1/messages", json={
                "from": "a@example.test", "to": "hangup@example.test", "text": "x"}).json()
        wait_until(lambda: get_message(outbox, accepted["id"])["status"] == "sent", timeout=60,
                   message="the message to be sent after the hang-up")
        message = get_message(outbox, accepted["id"])
    types = [e["type"] for e in message["events"]]
    print(f"\nhang-up at RCPT: {types}")
    assert "RCPT" in sink.commands and sink.commands.count("RCPT") >= 2
    assert "deferred" in types and types.index("deferred") < types.index("sent")
    assert "uncertain" not in types, "nothing was sent before the hang-up"
    assert sink.message_ids[accepted["message_id"]] == 1


# --- clocks -------------------------------------------------------------------------------

def test_a_worker_ten_minutes_ahead_never_takes_over_live_claims(tmp_path: Path,
                                                                 launch: Any) -> None:
    # PostgreSQL only: nodes share it and each has its own clock. On SQLite every
    # process is on one host with one clock, so there is no skew to test.
    total = 60
    with fresh_database() as url, ScriptedServer(script=[delay("DATA", 1.0)]) as sink:
        config = base_config(tmp_path, url, [relay_for(sink)])
        serve: OutboxProcess = launch(config)
        submitted = submit_many(serve, total)
        wait_until(lambda: len(claims(url)) >= 8, timeout=30, message="live claims")
        skewed_config = {**config, "logging": {**config["logging"],
                                               "file": str(tmp_path / "skewed.log")}}
        skewed: OutboxProcess = launch(skewed_config, command="worker",
                                       wrapper=["faketime", "-f", "+10m"],
                                       env={"FAKETIME_DONT_FAKE_MONOTONIC": "1"})
        # Start-up can take seconds on a loaded machine: the test is about a worker that
        # runs while claims are live, so it waits for the worker to say it started.
        wait_until(lambda: "worker started" in _text(skewed.log_path), timeout=60,
                   message="the skewed worker started")
        still_queued = total - len(sink.messages)
        wait_all_sent(url, total, timeout=120)
        assert skewed.proc is not None and skewed.proc.poll() is None, skewed.stderr_text()
        skewed.stop()
        uncertain = events(url, "uncertain")
        lines = skewed.log_path.read_text().splitlines()
    first = lines[0] if lines else ""
    print(f"\nskewed worker's first log line: {first[:160]}\n{len(uncertain)} uncertain "
          f"events, {sink.duplicates} duplicates")
    ahead = _logged_at(first) - time.time()
    assert 9 * 60 < ahead < 11 * 60, f"the worker should run 10 minutes ahead ({ahead:.0f}s)"
    assert still_queued > 0, "every message was sent before the skewed worker started"
    assert uncertain == [], uncertain
    assert sink.duplicates == 0
    assert set(sink.message_ids) == set(submitted.values())


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _logged_at(line: str) -> float:
    stamp = json.loads(line)["timestamp"]
    return _at(stamp).timestamp()

