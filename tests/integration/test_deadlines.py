"""Every network wait of a session has a deadline (STYLE principle 13), tested
by breaking the real dependency: a relay that answers DATA with 354 and then
stops reading, and a resolver that never answers the EHLO name lookup.

A stalled DATA must end the attempt within `command_timeout` as a plain
deferral (the final "." never left), free the pool's slot and drop the
session. The short-timeout tests keep the suite fast; the same promise at
the production default is `test_a_stall_ends_at_the_default_command_timeout`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta

import pytest
from tests.smtpd import ScriptedServer, stall_after_354

from outbox.config import DeliverySettings, RelaySettings
from outbox.core.classify import classify
from outbox.core.model import OutcomeKind, Scope
from outbox.core.report import Condition, DeliveryReport, Stage
from outbox.delivery.body import MessageBody
from outbox.delivery.pool import SessionPool
from outbox.delivery.smtp import hostnames
from outbox.delivery.smtp.session import open_session

ServerFactory = Callable[..., ScriptedServer]
RelayFactory = Callable[..., RelaySettings]

SENDER = "sender@x.test"
BODY_SIZE = 30_000_000  # far more than loopback's socket buffers can swallow
MARGIN = 10.0  # seconds of slack on a shared 2-core machine; never a speed figure
HEADER = b"From: sender@x.test\r\nTo: b@x.test\r\nSubject: big\r\nMessage-ID: <big@x.test>\r\n\r\n"
LINE = b"x" * 76 + b"\r\n"


class RepeatedBody:
    """A streamed `MessageBody` of BODY_SIZE bytes, made as it is read."""

    size = len(HEADER) + len(LINE) * (BODY_SIZE // len(LINE))
    eight_bit = False

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        yield HEADER
        piece = LINE * 800
        for _ in range(BODY_SIZE // len(piece)):
            yield piece


def big_bytes() -> bytes:
    return HEADER + LINE * (BODY_SIZE // len(LINE))


def body_of(kind: str) -> bytes | MessageBody:
    return big_bytes() if kind == "bytes" else RepeatedBody()


def with_command_timeout(delivery: DeliverySettings, seconds: float) -> DeliverySettings:
    return delivery.model_copy(update={"command_timeout": timedelta(seconds=seconds)})


def assert_stalled_in_data(report: DeliveryReport, elapsed: float, timeout: float) -> None:
    assert timeout <= elapsed < timeout + MARGIN
    assert report.failure is not None, report.transcript
    assert (report.failure.stage, report.failure.condition) == (Stage.DATA,
                                                                Condition.COMMAND_TIMEOUT)
    assert report.data_sent is False  # the final "." never left: not uncertain
    assert report.data_reply is None
    assert 'hung up mid-message: the final "." was never sent' in report.transcript
    assert "failed at data: command_timeout" in report.transcript
    outcome = classify(report)["b@x.test"]
    assert (outcome.kind, outcome.scope, outcome.guidance) == (
        OutcomeKind.DEFERRED, Scope.MESSAGE, "command_timeout")


async def send_to_a_stalling_relay(relay: RelaySettings, delivery: DeliverySettings,
                                   kind: str) -> None:
    timeout = delivery.command_timeout.total_seconds()
    session = await open_session(relay, delivery)
    assert session._smtp is not None
    connection = session._smtp.get_transport_info("socket")  # to see the socket itself close
    started = time.monotonic()
    report = await session.send(SENDER, ["b@x.test"], body_of(kind))
    elapsed = time.monotonic() - started

    assert_stalled_in_data(report, elapsed, timeout)
    assert not session.is_usable
    assert not await session.reset()  # never reused for the next message
    await session.close()
    # Aborted, not closed politely: a close would keep the socket open to flush
    # the unsent body into a relay that never reads it.
    assert connection.fileno() == -1


# --- a relay that stops reading after 354 ---------------------------------------------------

@pytest.mark.parametrize("kind", ["bytes", "streamed"])
async def test_a_relay_that_stops_reading_after_354_defers_within_command_timeout(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings, kind: str) -> None:
    # 2 s instead of the default 60 s keeps this fast for both body kinds; the
    # default is covered by test_a_stall_ends_at_the_default_command_timeout.
    server = smtp_server(script=[stall_after_354()])
    await send_to_a_stalling_relay(make_relay(server), with_command_timeout(delivery_settings, 2),
                                   kind)

    assert server.messages == []
    assert server.commands == ["EHLO", "MAIL", "RCPT", "DATA"]  # no RSET, no QUIT


@pytest.mark.long(61)
async def test_a_stall_ends_at_the_default_command_timeout(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    """The production default: slow, but it only waits. Both body kinds stall
    side by side on two connections, so the suite waits once."""
    default = DeliverySettings().command_timeout
    delivery = delivery_settings.model_copy(update={"command_timeout": default})
    server = smtp_server(script=[stall_after_354()])
    relay = make_relay(server)

    await asyncio.gather(*(send_to_a_stalling_relay(relay, delivery, kind)
                           for kind in ("bytes", "streamed")))

    assert server.messages == []


async def test_the_pool_frees_the_slot_and_drops_the_session_after_a_stall(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings) -> None:
    # 2 s instead of the default 60 s: the deadline itself is tested at the
    # default above; this test is about what the pool does after it.
    delivery = with_command_timeout(delivery_settings, 2)
    server = smtp_server(script=[stall_after_354(times=1)])
    small = HEADER.replace(b"<big@", b"<small@") + b"Hello.\r\n"
    async with SessionPool(make_relay(server, max_connections=1), delivery) as pool:
        started = time.monotonic()
        stalled = await pool.deliver(SENDER, ["b@x.test"], RepeatedBody())
        assert_stalled_in_data(stalled, time.monotonic() - started, 2)
        assert pool.idle_sessions == 0  # dropped, not kept for reuse

        # max_connections = 1: this only runs if the stalled delivery gave its slot back
        after = await asyncio.wait_for(pool.deliver(SENDER, ["b@x.test"], small), MARGIN)

    assert after.failure is None and after.data_reply is not None
    assert after.data_reply.code == 250
    assert pool.sessions_opened == 2
    assert [log.commands for log in server.connections] == [
        ["EHLO", "MAIL", "RCPT", "DATA"], ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]]
    assert [m.message_id for m in server.messages] == ["<small@x.test>"]


# --- the EHLO name lookup -------------------------------------------------------------------

async def test_a_resolver_that_never_answers_delays_ehlo_by_at_most_the_lookup_timeout(
        smtp_server: ServerFactory, make_relay: RelayFactory,
        delivery_settings: DeliverySettings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests cannot point this host at a silent DNS server, so the lookup itself
    # is made to hang, in its real thread, until the test lets it answer.
    answer = threading.Event()

    def silent_resolver(name: str = "") -> str:
        answer.wait()
        return "mail.fqdn.test"

    server = smtp_server()
    monkeypatch.setattr(hostnames, "_FQDN", hostnames._FqdnLookup())
    monkeypatch.setattr(socket, "getfqdn", silent_resolver)
    delivery = delivery_settings.model_copy(update={"helo_name": ""})
    try:
        started = time.monotonic()
        first = await open_session(make_relay(server), delivery)
        elapsed = time.monotonic() - started
        await first.close()
        assert hostnames.LOOKUP_TIMEOUT <= elapsed < hostnames.LOOKUP_TIMEOUT + MARGIN
        assert f"C: EHLO {socket.gethostname()}" in first.transcript.render()
    finally:
        answer.set()

    second = await open_session(make_relay(server), delivery)  # the answer came in time
    await second.close()
    assert "C: EHLO mail.fqdn.test" in second.transcript.render()
