"""`[delivery] processes`: `outbox serve` delivering through `outbox worker` processes
of its own, on SQLite and PostgreSQL. New mail wakes them across processes (the idle
poll is set to an hour here, so only a wake-up can start a delivery); one that dies is
started again and `/healthz` says so meanwhile; `kill -9` of serve stops them, and a
restart delivers what was left, never twice beyond the `uncertain` events. At the
defaults (`processes = "auto"`) serve runs two where it may use two cores, and none on
one; /metrics counts what its processes deliver, also across a restart of one. Two
processes with a backlog keep to a relay's max_connections together."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from outbox.niceness import BACKGROUND
from outbox.runtime.children import SHARED_PREFIX, usable_cores
from tests.e2e.support import (
    events,
    healthz,
    relay_for,
    scrape,
    status_counts,
    submit_in_batches,
    submit_many,
    value,
    wait_all_sent,
)
from tests.processes import OutboxProcess, alive, base_config, wait_until
from tests.smtpd import ScriptedServer, delay

IDLE_POLL = {"poll_interval": "1h"}  # an idle worker looks again only when woken


def started_children(outbox: OutboxProcess) -> list[int]:
    """pids of the delivery processes serve has started, from its log."""
    return [int(entry["pid"]) for entry in outbox.logged("delivery process started")]


def shared_directories(serve: OutboxProcess) -> list[Path]:
    """Where serve's delivery processes keep their counts and health (one per serve)."""
    assert serve.proc is not None
    return list(Path(tempfile.gettempdir()).glob(f"{SHARED_PREFIX}{serve.proc.pid}-*"))


def at_the_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The test config with `[delivery] processes` left out (tests/processes.py sets 0)."""
    config["delivery"].pop("processes")
    return config


def sent(outbox: OutboxProcess) -> float:
    return value(scrape(outbox), "outbox_deliveries_total", relay="default", result="sent")


def test_serve_at_the_defaults_delivers_in_processes_of_its_own_and_counts_it(
        start_outbox: Any, database_url: str, tmp_path: Path) -> None:
    assert usable_cores() >= 2, "this test needs the two cores CI machines have"
    with ScriptedServer() as sink:
        config = at_the_defaults(base_config(tmp_path, database_url, [relay_for(sink)]))
        outbox = start_outbox([], config=config, wait=False)
        answers = []  # /healthz until its first 200: not before the delivery processes claim
        wait_until(lambda: answers.append(healthz(outbox)) or answers[-1][0] == 200,
                   timeout=30, interval=0.05, message="/healthz 200")
        assert len(outbox.logged("worker started")) == 2
        starting = [body for code, body in answers if code == 503]
        assert starting and all(
            body["problems"] and set(body["problems"]) <= {
                "delivery process 1: starting", "delivery process 2: starting"}
            for body in starting), answers
        [serving] = outbox.logged("outbox serving")
        assert serving["delivery_processes"] == 2 and "owner" not in serving
        # On uvloop, serve and its delivery processes (outbox/event_loop.py).
        assert {serving["event_loop"]} == {
            w["event_loop"] for w in outbox.logged("worker started")} == {"uvloop"}
        children = started_children(outbox)
        owners = {int(w["owner"].split(":")[1]) for w in outbox.logged("worker started")}
        assert owners == set(children) and len(children) == 2
        assert outbox.proc is not None and outbox.proc.pid not in children
        # Serve's requests come first when the cores are busy (outbox.niceness).
        assert all(os.getpriority(os.PRIO_PROCESS, child) ==
                   os.getpriority(os.PRIO_PROCESS, outbox.proc.pid) + BACKGROUND
                   for child in children)

        submit_many(outbox, 5)
        wait_all_sent(database_url, 5, timeout=60)
        wait_until(lambda: sent(outbox) == 5, timeout=10, message="5 sent in /metrics")
        samples = scrape(outbox)
        assert value(samples, "outbox_attempt_duration_seconds_count", relay="default") == 5

        # A delivery process that dies and is started again: what it counted stays.
        os.kill(children[0], signal.SIGKILL)
        wait_until(lambda: len(outbox.logged("worker started")) == 3, timeout=30,
                   message="a new delivery process")
        assert sent(outbox) == 5
        submit_many(outbox, 3)
        wait_all_sent(database_url, 8, timeout=60)
        wait_until(lambda: sent(outbox) == 8, timeout=10, message="8 sent in /metrics")

        [directory] = shared_directories(outbox)
        assert outbox.stop(timeout=30) == 0
    assert not directory.exists(), "serve removes its delivery processes' metric files"
    assert len(sink.messages) == 8 and sink.duplicates == 0


@pytest.mark.long(25)
def test_a_delivery_process_that_stops_answering_fails_healthz(
        launch: Callable[..., OutboxProcess], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/outbox.db"
    with ScriptedServer() as sink:
        outbox = launch(base_config(tmp_path, url, [relay_for(sink)],
                                    delivery={"processes": 1}))
        [child] = started_children(outbox)
        os.kill(child, signal.SIGSTOP)  # hung: alive, holding its lock, saying nothing
        try:
            wait_until(lambda: healthz(outbox)[0] == 503, timeout=30, message="/healthz 503")
            [problem] = healthz(outbox)[1]["problems"]
            assert problem.startswith("delivery process 1: has not reported for"), problem
        finally:
            os.kill(child, signal.SIGCONT)
        wait_until(lambda: healthz(outbox)[0] == 200, timeout=10, message="/healthz 200")
        submit_many(outbox, 2)
        wait_all_sent(url, 2, timeout=30)
    assert started_children(outbox) == [child]  # the same process, answering again


def test_on_one_core_serve_delivers_itself_at_the_defaults(
        launch: Callable[..., OutboxProcess], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/outbox.db"
    with ScriptedServer() as sink:
        config = at_the_defaults(base_config(tmp_path, url, [relay_for(sink)]))
        outbox = launch(config, wrapper=["taskset", "-c", "0"])  # one core allowed
        submit_many(outbox, 3)
        wait_all_sent(url, 3, timeout=60)
        wait_until(lambda: sent(outbox) == 3, timeout=10, message="3 sent in /metrics")
    [serving] = outbox.logged("outbox serving")
    assert "delivery_processes" not in serving and "owner" in serving
    assert not outbox.logged("delivery process started")


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
    # The second claims only while a backlog waits (tests/integration/test_claim_rounds.py).
    first, second = (started(outbox, pid) for pid in children)
    assert first["for_backlogs"] is False and second["for_backlogs"] is True


class SessionCounter(threading.Thread):
    """Counts, every 20 ms, each process's established sessions to `port`, as the kernel
    sees them from the processes' side: one read of the machine's TCP table a sample,
    so that the processes are counted at the same moment. Only these processes' sockets
    are looked up: psutil.net_connections reads every process's, 22 ms of CPU a sample,
    half a core while the test ran; this takes 1.5 ms (the test on both backends: 12.5 ->
    8.8 s of CPU)."""

    def __init__(self, pids: list[int], port: int) -> None:
        super().__init__(daemon=True)
        self.pids, self.port = pids, port
        self.samples: list[dict[int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            sockets = {pid: socket_inodes(pid) for pid in self.pids}
            established = established_to(self.port)
            self.samples.append({pid: len(inodes & established)
                                 for pid, inodes in sockets.items()})


def socket_inodes(pid: int) -> set[int]:
    """The inodes of process `pid`'s sockets, from its file descriptors."""
    fds = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fds)
    except FileNotFoundError:  # ended
        return set()
    inodes = set()
    for name in names:
        with contextlib.suppress(OSError):  # closed meanwhile
            link = os.readlink(f"{fds}/{name}")
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    return inodes


NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20  # linux/netlink.h, linux/sock_diag.h
NLM_F_DUMP_REQUEST, NLMSG_ERROR, NLMSG_DONE = 0x301, 2, 3
TCP_ESTABLISHED = 1


def established_to(port: int) -> set[int]:
    """The inodes of the machine's established IPv4 TCP connections to `port` (the relay
    listens on 127.0.0.1), in one dump of the kernel's table by sock_diag, as `ss` reads
    it: the kernel leaves out the other states (/proc/net/tcp takes 5 ms of CPU to list
    them all, this 1.4 ms)."""
    request = struct.pack("=BBxxI48x", socket.AF_INET, socket.IPPROTO_TCP,
                          1 << TCP_ESTABLISHED)  # an inet_diag_req_v2
    inodes: set[int] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as diag:
        diag.send(struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY,
                              NLM_F_DUMP_REQUEST, 1, 0) + request)
        while True:
            data, offset = diag.recv(1 << 16), 0
            while offset < len(data):  # netlink headers (16 bytes), each an inet_diag_msg
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == NLMSG_DONE:
                    return inodes
                if kind == NLMSG_ERROR:
                    raise OSError(-struct.unpack_from("=i", data, offset + 16)[0], "sock_diag")
                # the message's destination port (big-endian) at 6, its inode at 68
                if struct.unpack_from(">H", data, offset + 16 + 6)[0] == port:
                    inodes.add(struct.unpack_from("=I", data, offset + 16 + 68)[0])
                offset += (length + 3) & ~3


@pytest.mark.long(20)
def test_two_delivery_processes_keep_to_a_relay_s_max_connections_together(
        start_outbox: Any, database_url: str) -> None:
    """Both processes deliver a backlog to one relay at the default max_connections (4):
    the relay never has more than 4 sessions from them at once, and they share them."""
    total = 600  # more than the first process's concurrency: the second claims too
    with ScriptedServer(script=[delay("DATA", 0.02)]) as sink:
        outbox = start_outbox([relay_for(sink)], delivery={"processes": 2})
        wait_until(lambda: len(outbox.logged("worker started")) == 2, timeout=30,
                   message="both workers up")
        counter = SessionCounter(started_children(outbox), sink.port)
        counter.start()
        try:
            submit_in_batches(outbox, total)
            wait_all_sent(database_url, total, timeout=120)
        finally:
            counter.done.set()
            counter.join()

    assert len(sink.message_ids) == total and sink.duplicates == 0
    assert sink.most_open <= 4, sink.most_open
    assert max(sum(sample.values()) for sample in counter.samples) <= 4
    # Each process had sessions while the other had some too.
    assert any(all(sample.values()) for sample in counter.samples), counter.samples


def started(outbox: OutboxProcess, pid: int) -> dict[str, Any]:
    """The "worker started" line of delivery process `pid`."""
    [entry] = [e for e in outbox.logged("worker started") if f":{pid}:" in e["owner"]]
    return entry


# Supervision and signals do not depend on the database: one backend each (the suite's
# time), the other for the other; recovery and wake-ups above run on both.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
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
    # Slow DATA replies (8 connections: about 20 messages a second): deliveries are in
    # flight when serve is killed, and most of the queue is still waiting. (At 40 a
    # second, with both processes up before /healthz says 200, all 200 could go out while
    # submit_many was still returning on a busy machine.)
    with ScriptedServer(script=[delay("DATA", 0.4)]) as sink:
        relay = relay_for(sink)
        outbox: OutboxProcess = start_outbox([relay], delivery={"processes": 2})
        submit_many(outbox, total)
        wait_until(lambda: len(sink.messages) >= 20, timeout=60, message="20 deliveries")
        children = started_children(outbox)
        [left_behind] = shared_directories(outbox)
        assert outbox.proc is not None
        os.kill(outbox.proc.pid, signal.SIGKILL)  # serve alone, not its process group

        # Each child notices within about a second and stops as on SIGTERM.
        wait_until(lambda: not any(alive(pid) for pid in children), timeout=30,
                   message="the delivery processes gone after serve")
        assert len(sink.messages) < total, "the kill should land mid-delivery"

        # serve had no chance to remove its directory (a serve another test starts
        # meanwhile may have: its owners are all gone; tests/integration/test_child_health.py)
        restarted = start_outbox([relay], config=outbox.config)
        wait_all_sent(database_url, total, timeout=120, what="after the restart")
        assert not left_behind.exists(), "the next serve removes a dead one's metric files"
        restarted.stop()

    uncertain = len(events(database_url, "uncertain"))
    assert len(sink.message_ids) == total
    assert sink.duplicates <= uncertain, (sink.duplicates, uncertain)
    assert dict(status_counts(database_url)) == {"sent": total}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # as the restart above
def test_sigterm_stops_serve_and_every_delivery_process(start_outbox: Any) -> None:
    with ScriptedServer() as sink:
        outbox = start_outbox([relay_for(sink)], delivery={"processes": 2})
        wait_until(lambda: len(started_children(outbox)) == 2, timeout=30,
                   message="two delivery processes")
        children = started_children(outbox)

        assert outbox.stop(timeout=30) == 0
    assert not any(alive(pid) for pid in children)
    assert "outbox stopped" in outbox.log_path.read_text()
