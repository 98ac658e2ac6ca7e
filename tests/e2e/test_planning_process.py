"""`outbox serve` plans large messages in a process of its own (outbox/turns.py,
issue 17): it starts with serve, plans a 5,000-recipient message submitted over HTTP,
and ends with serve, whether serve stops on SIGTERM or is killed with `kill -9` (the
signal to serve alone, as an operator's `kill <pid>` sends it, not to its group)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from tests.processes import OutboxProcess, alive, base_config, wait_until


def planning_pid(outbox: OutboxProcess) -> int | None:
    started = outbox.logged("planning process started")
    return int(started[0]["pid"]) if started else None


def cpu_ticks(pid: int) -> int:
    """User and system CPU time of `pid`, in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().split(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def started(launch: Any, tmp_path: Path, closed_relay: dict[str, Any],
            **sections: dict[str, Any]) -> tuple[OutboxProcess, int]:
    url = f"sqlite:///{tmp_path}/outbox.db"
    outbox = launch(base_config(tmp_path, url, [closed_relay], **sections))
    pid = wait_until(lambda: planning_pid(outbox), timeout=60,
                     message="the planning process to start")
    assert alive(pid) and pid != outbox.proc.pid
    return outbox, pid


def test_serve_plans_a_large_message_and_its_process_ends_on_sigterm(
        launch: Any, tmp_path: Path, closed_relay: dict[str, Any]) -> None:
    # 5,000 recipients: tens of milliseconds of planning, several clock ticks of the
    # planning process's CPU (a tick is 10 ms), where an idle process spends none.
    outbox, pid = started(launch, tmp_path, closed_relay, limits={"max_recipients": 5000})
    before = cpu_ticks(pid)
    with outbox.client() as http:
        answer = http.post("/v1/messages", json={
            "from": "app@example.test", "subject": "many", "text": "hello",
            "to": [f"r{n}@example.test" for n in range(5000)]})
        assert answer.status_code == 202, answer.text
        detail = http.get(f"/v1/messages/{answer.json()['id']}").json()
    assert len(detail["recipients"]) == 5000
    assert cpu_ticks(pid) > before, "the planning process did not plan the message"
    assert outbox.proc is not None
    os.kill(outbox.proc.pid, signal.SIGTERM)
    assert outbox.proc.wait(30) == 0
    wait_until(lambda: not alive(pid), timeout=10, message="the planning process to end")


def test_kill_9_of_serve_ends_its_planning_process(
        launch: Any, tmp_path: Path, closed_relay: dict[str, Any]) -> None:
    outbox, pid = started(launch, tmp_path, closed_relay)
    assert outbox.proc is not None
    os.kill(outbox.proc.pid, signal.SIGKILL)
    outbox.proc.wait(10)
    wait_until(lambda: not alive(pid), timeout=20,
               message="the planning process to end with serve")


def test_a_large_message_with_a_bad_address_gets_the_same_422_as_a_small_one(
        launch: Any, tmp_path: Path, closed_relay: dict[str, Any]) -> None:
    """Refused in the planning process, the message is planned again on a thread, which
    raises the error the API answers with (outbox/turns.py)."""
    outbox, _ = started(launch, tmp_path, closed_relay)
    bad = "not an address"
    with outbox.client() as http:
        small = http.post("/v1/messages", json={
            "from": "app@example.test", "subject": "one", "text": "hello", "to": [bad]})
        large = http.post("/v1/messages", json={
            "from": "app@example.test", "subject": "many", "text": "hello",
            "to": [f"r{n}@example.test" for n in range(300)] + [bad]})
    assert small.status_code == large.status_code == 422, (small.text, large.text)
    one, many = small.json()["error"], large.json()["error"]
    assert (one["field"], many["field"]) == ("to[0]", "to[300]")
    assert {**many, "field": "to[0]", "message": many["message"].replace("to[300]", "to[0]")} \
        == one
