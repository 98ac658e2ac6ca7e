"""The session pool against the real scripted server: reuse with RSET, the
connection cap, discarding after failures, reconnecting, idle expiry."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from tests.smtpd import ScriptedServer, closed_port, delay, drop, reply

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.report import Condition, Stage
from outbox.delivery.pool import SessionPool

ServerFactory = Callable[..., ScriptedServer]
RelayFactory = Callable[..., RelaySettings]

SENDER = "sender@x.test"


def message(number: int) -> bytes:
    return (f"From: {SENDER}\r\nTo: b@x.test\r\nSubject: {number}\r\n"
            f"Message-ID: <m{number}@x.test>\r\n\r\nMessage {number}.\r\n").encode()


def settings(delivery: DeliverySettings, **changes: object) -> DeliverySettings:
    return delivery.model_copy(update=changes)


async def deliver_many(pool: SessionPool, count: int, *, concurrently: bool = False) -> list:
    if concurrently:
        return list(await asyncio.gather(
            *(pool.deliver(SENDER, ["b@x.test"], message(n)) for n in range(count))))
    return [await pool.deliver(SENDER, ["b@x.test"], message(n)) for n in range(count)]


async def test_one_connection_carries_several_messages_with_rset_between(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    async with SessionPool(make_relay(server), delivery_settings) as pool:
        reports = await deliver_many(pool, 3)

    assert all(r.failure is None and r.data_reply.code == 250 for r in reports)
    assert len(server.connections) == 1 and pool.sessions_opened == 1
    transaction = ["MAIL", "RCPT", "DATA"]
    assert server.commands == ["EHLO", *transaction, "RSET", *transaction, "RSET",
                               *transaction, "QUIT"]
    assert len(server.message_ids) == 3 and server.duplicates == 0


async def test_concurrent_deliveries_never_exceed_max_connections(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[delay("DATA", 0.05)])
    async with SessionPool(make_relay(server, max_connections=2), delivery_settings) as pool:
        reports = await deliver_many(pool, 10, concurrently=True)

    assert all(r.failure is None for r in reports)
    assert len(server.connections) == 2 and pool.sessions_opened == 2
    assert len(server.messages) == 10
    assert {m.connection for m in server.messages} == {0, 1}


async def test_a_failed_session_is_discarded(smtp_server: ServerFactory,
                                             make_relay: RelayFactory,
                                             delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[drop("DATA", times=1)])
    async with SessionPool(make_relay(server), delivery_settings) as pool:
        failed, ok = await deliver_many(pool, 2)

    assert failed.failure is not None and failed.failure.stage is Stage.AFTER_DATA
    assert ok.failure is None
    assert len(server.connections) == 2 and pool.sessions_opened == 2
    assert "RSET" not in server.commands  # the broken session was never reused


async def test_a_refused_recipient_does_not_spoil_the_session(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[reply("RCPT", "550 5.1.1 No such user", times=1),
                                 reply("DATA", "451 4.3.0 Try later", times=1)])
    async with SessionPool(make_relay(server), delivery_settings) as pool:
        reports = await deliver_many(pool, 3)

    assert [r.rcpt_replies["b@x.test"].code for r in reports] == [550, 250, 250]
    assert [r.data_reply.code if r.data_reply else None for r in reports] == [None, 451, 250]
    assert len(server.connections) == 1


async def test_a_421_closes_the_session(smtp_server: ServerFactory, make_relay: RelayFactory,
                                        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[reply("MAIL", "421 4.7.0 Too many messages, slow down",
                                       times=1)])
    async with SessionPool(make_relay(server), delivery_settings) as pool:
        throttled, ok = await deliver_many(pool, 2)

    assert throttled.mail_reply is not None and throttled.mail_reply.code == 421
    assert ok.failure is None
    assert len(server.connections) == 2


async def test_reconnects_after_messages_per_connection(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    delivery = settings(delivery_settings, messages_per_connection=2)
    async with SessionPool(make_relay(server), delivery) as pool:
        reports = await deliver_many(pool, 5)

    assert all(r.failure is None for r in reports)
    assert [len([c for c in log.commands if c == "DATA"]) for log in server.connections] == [
        2, 2, 1]
    assert all(log.commands[-1] == "QUIT" for log in server.connections)


async def test_idle_sessions_are_closed_after_idle_timeout(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    delivery = settings(delivery_settings, idle_timeout=timedelta(seconds=0.2))
    async with SessionPool(make_relay(server), delivery) as pool:
        await deliver_many(pool, 1)
        assert pool.idle_sessions == 1
        await asyncio.sleep(0.5)
        assert pool.idle_sessions == 0
        assert server.connections[0].commands[-1] == "QUIT"
        report = await pool.deliver(SENDER, ["b@x.test"], message(9))

    assert report.failure is None
    assert len(server.connections) == 2


async def test_a_stale_idle_session_is_replaced_not_reported(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[drop("RSET", times=1)])
    async with SessionPool(make_relay(server), delivery_settings) as pool:
        first, second = await deliver_many(pool, 2)

    assert first.failure is None and second.failure is None
    assert len(server.connections) == 2
    assert "C: RSET" not in second.transcript  # its transcript is the new session's


async def test_an_open_failure_is_reported(delivery_settings: DeliverySettings) -> None:
    relay = RelaySettings(name="closed", host="127.0.0.1", port=closed_port(), security="none")
    async with SessionPool(relay, delivery_settings) as pool:
        report = await pool.deliver(SENDER, ["b@x.test", "c@x.test"], message(1))

    assert report.relay == "closed" and report.recipients == ("b@x.test", "c@x.test")
    assert report.failure is not None
    assert (report.failure.stage, report.failure.condition) == (Stage.CONNECT,
                                                                Condition.CONNECTION_REFUSED)
    assert "failed at connect" in report.transcript


async def test_the_server_recovers_when_the_script_changes(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    server = smtp_server(script=[reply("GREETING", "421 4.3.2 Maintenance")])
    async with SessionPool(make_relay(server), delivery_settings) as pool:
        refused = await pool.deliver(SENDER, ["b@x.test"], message(1))
        server.set_script()  # behave normally from now on
        accepted = await pool.deliver(SENDER, ["b@x.test"], message(1))

    assert refused.failure is not None and refused.failure.stage is Stage.GREETING
    assert accepted.failure is None
    assert server.message_ids == {"<m1@x.test>": 1}


async def test_aclose_quits_idle_sessions(smtp_server: ServerFactory, make_relay: RelayFactory,
                                          delivery_settings: DeliverySettings) -> None:
    server = smtp_server()
    pool = SessionPool(make_relay(server, max_connections=3), delivery_settings)
    await deliver_many(pool, 3, concurrently=True)
    assert pool.idle_sessions == 3

    await pool.aclose()

    assert pool.idle_sessions == 0
    assert [log.commands[-1] for log in server.connections] == ["QUIT"] * 3


async def test_the_standalone_sink_counts_messages_and_message_ids(
        tmp_path: Path, delivery_settings: DeliverySettings) -> None:
    count_file = tmp_path / "counts.json"
    script = Path(__file__).resolve().parents[1] / "smtpd.py"
    sink = subprocess.Popen([sys.executable, str(script), "--port", "0",
                             "--count-file", str(count_file)], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline().rsplit(":", 1)[1])
        relay = RelaySettings(name="sink", host="127.0.0.1", port=port, security="none")
        async with SessionPool(relay, delivery_settings) as pool:
            reports = await deliver_many(pool, 20, concurrently=True)
            again = await pool.deliver(SENDER, ["b@x.test"], message(3))  # a duplicate
        assert all(r.failure is None for r in [*reports, again])
    finally:
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(timeout=10) == 0

    counts = json.loads(count_file.read_text())
    assert counts["messages"] == 21
    assert counts["distinct_message_ids"] == 20 and counts["duplicates"] == 1
    assert counts["connections"] == 4  # max_connections, reused
