"""Mail waiting for a slow relay's room is visible to the operator (a stranger pass).

A worker gives one relay at most a share of its concurrency (worker/relay_room.py), and
a relay whose share is full has its due mail skipped by the claim: that mail stays
`queued`. With one session to a relay that takes 3 s to answer DATA and a concurrency
of 4 (a share of 2), 10 messages queue behind it. `outbox relay ls` said "ok  delivery:
open" and `outbox doctor` passed every check while they sat; now both say how many are
due and not being delivered, and doctor names the relay, the count, the oldest wait and
the next step. A real `outbox serve` and a loopback relay, on both backends."""

from __future__ import annotations

import json
import time

from tests.e2e.conftest import Starter
from tests.processes import wait_until
from tests.smtpd import ScriptedServer, delay

SLOW_DATA = 3.0


def test_relay_ls_and_doctor_show_mail_waiting_for_a_slow_relays_session(
        start_outbox: Starter) -> None:
    with ScriptedServer(script=[delay("DATA", SLOW_DATA)]) as slow:
        relay = {"name": "slow", "host": "127.0.0.1", "port": slow.port, "security": "none",
                 "max_connections": 1}
        # poll_interval stays at the tests' 100ms: doctor warns past 5 of them (0.5 s).
        process = start_outbox([relay], delivery={"concurrency": 4, "data_timeout": "30s"})
        with process.client() as client:
            for n in range(10):
                answer = client.post("/v1/messages", json={
                    "from": "app@example.test", "to": f"r{n}@example.test", "subject": "s",
                    "text": "hello"})
                assert answer.status_code == 202, answer.text
        wait_until(lambda: "sending" in process.cli("queue", "ls").stdout, timeout=15)
        time.sleep(1.0)  # the queued mail has now waited longer than 5 poll intervals

        listed = process.cli("relay", "ls")
        doctor = process.cli("doctor", "--json")

    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.strip().splitlines()
    assert "  delivery: open  waiting: " in line, line
    # 2 claimed (the worker's share for the relay), at most one delivered by now.
    assert 5 <= int(line.split("waiting: ")[1].split()[0]) <= 8, line
    assert "message(s) due now, not being delivered yet (the oldest for " in line

    assert doctor.returncode == 0, doctor.stderr  # a warning, not a failure
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    check = checks["relay slow: waiting"]
    assert check["status"] == "warn", check
    assert "message(s) due now, not being delivered yet (the oldest for " in check["detail"]
    assert "max_connections 1" in check["detail"]
    assert check["fix"].startswith("Raise max_connections of relay slow if the relay allows "
                                   "more sessions; else it is slow to answer.")


def test_relay_ls_shows_a_relay_whose_first_message_is_in_data_as_sending(
        start_outbox: Starter) -> None:
    """Before its first attempt finishes, a relay has no outcome in the alerts window:
    `relay ls` said "idle" while its first sessions sat in a slow DATA (stop 59's
    stranger pass)."""
    with ScriptedServer(script=[delay("DATA", 60)]) as slow:
        relay = {"name": "slow", "host": "127.0.0.1", "port": slow.port, "security": "none"}
        process = start_outbox([relay], delivery={"data_timeout": "2m"})
        with process.client() as client:
            answer = client.post("/v1/messages", json={
                "from": "app@example.test", "to": "r@example.test", "subject": "s",
                "text": "hello"})
            assert answer.status_code == 202, answer.text
        wait_until(lambda: "DATA" in slow.commands, timeout=15, message="DATA sent")
        listed = process.cli("relay", "ls")

    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.strip().splitlines()
    assert "  sending (1 taken, none finished yet)  delivery: open" in line, line
