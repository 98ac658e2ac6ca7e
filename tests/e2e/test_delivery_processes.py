"""`[delivery] processes`: `outbox serve` delivering through `outbox worker` processes
of its own, on SQLite and PostgreSQL. New mail wakes them across processes (the idle
poll is set to an hour here, so only a wake-up can start a delivery); one that dies is
started again and `/healthz` says so meanwhile; `kill -9` of serve stops them, and a
restart delivers what was left, never twice beyond the `uncertain` events."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from tests.e2e.support import (
    events,
    healthz,
    relay_for,
    status_counts,
    submit_many,
    wait_all_sent,
)
from tests.processes import OutboxProcess, alive, wait_until
from tests.smtpd import ScriptedServer, delay

IDLE_POLL = {"poll_interval": "1h"}  # an idle worker looks again only when woken


def started_children(outbox: OutboxProcess) -> list[int]:
    """pids of the delivery processes serve has started, from its log."""
    return [int(entry["pid"]) for entry in outbox.logged("delivery process started")]


def test_serve_delivers_through_its_processes_woken_by_new_mail(
        start_outbox: Any, database_url: str) -> None:
    with ScriptedServer() as sink:
        outbox = start_outbox([relay_for(sink)], delivery={"processes": 2, **IDLE_POLL})
        wait_until(lambda: len(started_children(outbox)) == 2, timeout=30,
                   message="two delivery processes")
        children = started_children(outbox)
        # Both, not the first: on a busy machine the second can start after the first
        # has delivered all 40 (serve also starts its planning process meanwhile).
        wait_until(lambda: len(outbox.logged("worker started")) == 2, timeout=30,
                   message="both workers up")

        submit_many(outbox, 40)
        wait_all_sent(database_url, 40, timeout=60)

    assert len(sink.messages) == 40 and sink.duplicates == 0
    assert all(alive(pid) for pid in children) and os.getpid() not in children
    [serving] = outbox.logged("outbox serving")
    assert serving["delivery_processes"] == 2 and "owner" not in serving
    # The deliveries were made by the children, never by serve itself.
    owners = {entry["owner"] for entry in outbox.logged("worker started")}
    assert {int(owner.split(":")[1]) for owner in owners} == set(children)


def test_a_dead_delivery_process_is_started_again(start_outbox: Any,
                                                  database_url: str) -> None:
    with ScriptedServer() as sink:
        outbox = start_outbox([relay_for(sink)], delivery={"processes": 1, **IDLE_POLL})
        wait_until(lambda: "worker started" in outbox.log_path.read_text(), timeout=30,
                   message="the worker up")
        [first] = started_children(outbox)

        os.kill(first, signal.SIGKILL)
        wait_until(lambda: healthz(outbox)[0] == 503, timeout=10, message="/healthz 503")
        _, body = healthz(outbox)
        assert any("delivery process 1" in problem and "signal 9" in problem
                   for problem in body["problems"]), body
        wait_until(lambda: len(started_children(outbox)) == 2, timeout=30,
                   message="a new delivery process")
        wait_until(lambda: healthz(outbox)[0] == 200, timeout=30, message="/healthz 200")

        submit_many(outbox, 10)
        wait_all_sent(database_url, 10, timeout=60)
    assert len(sink.messages) == 10


@pytest.mark.long(25)
def test_kill_9_of_serve_stops_its_processes_and_a_restart_finishes_the_queue(
        start_outbox: Any, database_url: str) -> None:
    total = 200
    # Slow DATA replies (8 connections: about 40 messages a second): deliveries are in
    # flight when serve is killed, and most of the queue is still waiting.
    with ScriptedServer(script=[delay("DATA", 0.2)]) as sink:
        relay = relay_for(sink)
        outbox: OutboxProcess = start_outbox([relay], delivery={"processes": 2})
        submit_many(outbox, total)
        wait_until(lambda: len(sink.messages) >= 20, timeout=60, message="20 deliveries")
        children = started_children(outbox)
        assert outbox.proc is not None
        os.kill(outbox.proc.pid, signal.SIGKILL)  # serve alone, not its process group

        # Each child notices within about a second and stops as on SIGTERM.
        wait_until(lambda: not any(alive(pid) for pid in children), timeout=30,
                   message="the delivery processes gone after serve")
        assert len(sink.messages) < total, "the kill should land mid-delivery"

        restarted = start_outbox([relay], config=outbox.config)
        wait_all_sent(database_url, total, timeout=120, what="after the restart")
        restarted.stop()

    uncertain = len(events(database_url, "uncertain"))
    assert len(sink.message_ids) == total
    assert sink.duplicates <= uncertain, (sink.duplicates, uncertain)
    assert dict(status_counts(database_url)) == {"sent": total}


def test_sigterm_stops_serve_and_every_delivery_process(start_outbox: Any) -> None:
    with ScriptedServer() as sink:
        outbox = start_outbox([relay_for(sink)], delivery={"processes": 2})
        wait_until(lambda: len(started_children(outbox)) == 2, timeout=30,
                   message="two delivery processes")
        children = started_children(outbox)

        assert outbox.stop(timeout=30) == 0
    assert not any(alive(pid) for pid in children)
    assert "outbox stopped" in outbox.log_path.read_text()
