"""The relay governor with a real worker, a real store (SQLite and PostgreSQL) and
aiosmtpd relays on loopback, on an injected clock so that ten minutes of a relay's
outage take seconds: a relay that is down backs off exponentially with one probe
at a time and its mail spends no attempts; a relay that says "slow down" gets
fewer sessions at once, and more again once it stops; a 4xx to AUTH backs the
relay off instead of counting against the messages.

Retry, lease and back-off settings are the production defaults. Only
`poll_interval` is shortened: the worker's idle sleep is real time, while the
test moves the clock by whole back-off periods.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from structlog.testing import capture_logs
from tests.pg import database
from tests.smtpd import RecordingHandler, ScriptedServer, _connection_log, closed_port, reply

from outbox.clock import utcnow
from outbox.config import RelaySettings, Settings
from outbox.core import guidance
from outbox.core.compose import Submission
from outbox.core.governor import State
from outbox.core.model import MessageStatus
from outbox.service import Outbox
from outbox.worker.loop import Worker

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])


class Clock:
    """The injected wall clock: moves only when the test says."""

    def __init__(self) -> None:
        self.now = utcnow()
        self.started = self.now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @property
    def elapsed(self) -> float:
        return (self.now - self.started).total_seconds()


class Node:
    def __init__(self, outbox: Outbox, clock: Clock) -> None:
        self.outbox = outbox
        self.clock = clock
        self.worker: Worker = outbox.start_delivery()
        self.task = asyncio.create_task(self.worker.run())

    async def submit(self, count: int) -> list[str]:
        ids = []
        for n in range(count):
            accepted = await self.outbox.messages.submit(Submission(
                sender="app@example.test", to=f"rcpt{n}@example.test", subject=f"n{n}",
                text="hello"))
            ids.append(accepted.message.id)
        return ids

    async def messages(self, ids: list[str]) -> list[Any]:
        """In one read, not one per message: `settle` asks ten times a second, and a
        hundred reads each time were most of this module's CPU (11 s of the ten-minute
        outage on PostgreSQL, on a 2-core CI machine where the suite is CPU-bound)."""
        page = await self.outbox.messages.list(limit=len(ids) + 1)
        found = {m.id: m for m in page.messages}
        return [found[i] for i in ids]

    async def settle(self, ids: list[str]) -> None:
        """Until nothing is due or in flight on the current clock."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            pending = [m for m in await self.messages(ids)
                       if m.status is MessageStatus.SENDING
                       or (m.status in (MessageStatus.QUEUED, MessageStatus.DEFERRED)
                           and m.due_at is not None and m.due_at <= self.clock())]
            if not pending:
                return
        raise AssertionError("the queue did not settle")

    async def governor(self, relay: str = "r") -> Any:
        return await self.outbox.store.governor.load_governor_state(relay)

    async def to_next_probe(self, at_least: float = 10) -> None:
        """Move the clock on by `at_least`, or to the end of the relay's back-off."""
        until = (await self.governor()).backoff_until
        wait = (until - self.clock()).total_seconds() + 1 if until is not None else 0
        self.clock.advance(max(at_least, wait))


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Any:
    with database(backend, tmp_path) as url:
        yield url


@pytest.fixture
async def node(db_url: str) -> AsyncIterator[NodeFactory]:
    opened: list[Node] = []

    async def open_one(relay: RelaySettings, **delivery: Any) -> Node:
        clock = Clock()
        settings = Settings(database={"url": db_url}, relays=[relay], delivery={
            "poll_interval": "50ms", "helo_name": "client.test", "connect_timeout": "3s",
            **delivery})
        store = (await Outbox.open(settings)).store
        opened.append(Node(Outbox(settings, store, clock=clock), clock))
        return opened[-1]

    yield open_one
    for one in opened:
        one.worker.stop()
        await asyncio.gather(one.task, return_exceptions=True)
        await one.outbox.close()


# --- a relay that is down ------------------------------------------------------------------

@pytest.mark.long(22)
async def test_a_relay_down_for_ten_minutes_backs_off_and_its_mail_spends_no_attempts(
        node: NodeFactory) -> None:
    port = closed_port()
    relay = RelaySettings(name="r", host="127.0.0.1", port=port, security="none")
    with capture_logs() as logs:
        n = await node(relay)
        ids = await n.submit(100)
        while n.clock.elapsed < 600:
            await n.settle(ids)
            messages = await n.messages(ids)
            assert {m.attempts for m in messages} == {0}
            assert {m.status for m in messages} <= {MessageStatus.QUEUED, MessageStatus.DEFERRED}
            await n.to_next_probe()
        down = await n.governor()
        assert down.state(n.clock()) in (State.BACKING_OFF, State.PROBING)

        server = ScriptedServer(port=port).start()
        try:
            while len(server.message_ids) < 100 and n.clock.elapsed < 1800:
                await n.to_next_probe()
                await n.settle(ids)
            messages = await n.messages(ids)
        finally:
            server.stop()

    assert {m.status for m in messages} == {MessageStatus.SENT}
    assert {m.attempts for m in messages} == {1}  # the one that delivered, no other
    assert len(server.message_ids) == 100 and server.duplicates == 0
    assert (await n.governor()).state(n.clock()) is State.OPEN
    # Exponential back-off with one probe at a time, each logged with its count.
    backoffs = [entry for entry in logs if entry["event"] == "relay down; backing off"]
    waits = [entry["wait"] for entry in backoffs]
    assert len(waits) >= 5 and waits[0] == pytest.approx(10, rel=0.11)
    assert all(later >= 1.8 * earlier for earlier, later in pairwise(waits[:5])), waits
    probes = [entry["probe"] for entry in logs
              if entry["event"] == "relay back-off over; probing with one session"]
    assert probes == list(range(1, len(probes) + 1)) and len(probes) >= len(waits) - 1
    assert any(entry["event"] == "relay open again" for entry in logs)


async def test_a_4xx_to_auth_backs_the_relay_off_without_counting_attempts(
        node: NodeFactory) -> None:
    server = ScriptedServer(auth=("user", "secret-pw-1"), script=[
        reply("AUTH", "454 4.7.0 Temporary authentication failure")]).start()
    try:
        relay = RelaySettings(name="r", host="127.0.0.1", port=server.port, security="none",
                              username="user", password="secret-pw-1")
        n = await node(relay)
        ids = await n.submit(3)
        for _ in range(4):
            await n.settle(ids)
            n.clock.advance(10)
        await n.settle(ids)
        messages = await n.messages(ids)
        assert {m.attempts for m in messages} == {0}
        assert {m.status for m in messages} == {MessageStatus.DEFERRED}
        paced = await n.governor()
        assert paced.failures >= 2 and "454" in paced.reason
        assert server.messages == []

        server.set_script()  # the provider's login works again
        while len(server.message_ids) < 3 and n.clock.elapsed < 600:
            n.clock.advance(10)
            await n.settle(ids)
        messages = await n.messages(ids)
    finally:
        server.stop()
    assert {m.status for m in messages} == {MessageStatus.SENT}
    assert {m.attempts for m in messages} == {1}


async def test_a_250_to_auth_holds_the_relay_s_mail_and_sends_nothing(node: NodeFactory) -> None:
    """A sink that says 250 to everything (Postfix's smtp-sink) answered AUTH with 250: a
    stranger pass found each message recorded `sent` with the reply '250 2.0.0 Ok', though
    MAIL was never given and nothing arrived. A login is confirmed by 235 alone."""
    server = ScriptedServer(auth=("user", "secret-pw-1"), script=[
        reply("AUTH", "250 2.0.0 Ok")]).start()
    try:
        relay = RelaySettings(name="r", host="127.0.0.1", port=server.port, security="none",
                              username="user", password="secret-pw-1")
        n = await node(relay)
        ids = await n.submit(2)
        await n.settle(ids)
        messages = await n.messages(ids)
    finally:
        server.stop()
    assert {m.status for m in messages} == {MessageStatus.HELD}
    assert server.messages == [] and "MAIL" not in server.commands
    assert {m.attempts for m in messages} == {0}


# --- a relay that says "slow down" ----------------------------------------------------------

class EveryThirdSession(RecordingHandler):
    """Answers MAIL with 421 4.7.0 in every third session while `throttling`, and
    measures how many transactions are open at once."""

    def __init__(self) -> None:
        super().__init__()
        self.throttling = True
        self.active = 0
        self.peak = 0

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        number = self.connections.index(_connection_log(server))
        if self.throttling and number % 3 == 2:
            return "421 4.7.0 Slow down: too many messages from your IP"
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.05)  # a relay that takes a moment, so sessions overlap
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.active -= 1
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.long(15)
async def test_a_relay_saying_slow_down_every_third_session_gets_fewer_sessions_then_more(
        node: NodeFactory) -> None:
    handler = EveryThirdSession()
    server = ScriptedServer(handler=handler).start()
    try:
        relay = RelaySettings(name="r", host="127.0.0.1", port=server.port, security="none")
        n = await node(relay, messages_per_connection=1)  # a session per message
        ids = await n.submit(15)
        await n.settle(ids)

        throttled = await n.governor()
        assert throttled.state(n.clock()) is State.THROTTLED
        assert throttled.limit == 1 and "421 4.7.0" in throttled.reason
        deferred = [m for m in await n.messages(ids) if m.status is MessageStatus.DEFERRED]
        assert deferred, "every third session was refused"
        events = (await n.outbox.messages.get(deferred[0].id)).events
        key = next(e.guidance for e in events if e.type.value == "deferred")
        assert key == "smtp.4.7.0"
        assert "slows down for this relay" in guidance.describe(key).next_step  # and it did:
        handler.peak = 0
        more = await n.submit(4)
        await n.settle(more)
        assert handler.peak == 1  # one session at a time while throttled

        handler.throttling = False  # the relay calmed down
        ids += more
        for _ in range(12):
            n.clock.advance(30)  # [governor] recovery: a session back per calm half minute
            handler.peak = 0
            ids += await n.submit(3)
            await n.settle(ids)
            if (await n.governor()).state(n.clock()) is State.OPEN:
                break
        assert (await n.governor()).state(n.clock()) is State.OPEN
        handler.peak = 0
        ids += await n.submit(8)
        await n.settle(ids)
        assert handler.peak >= 2  # concurrency is back
        while n.clock.elapsed < 3600 and any(
                m.status is not MessageStatus.SENT for m in await n.messages(ids)):
            n.clock.advance(60)
            await n.settle(ids)
    finally:
        server.stop()
    assert {m.status for m in await n.messages(ids)} == {MessageStatus.SENT}
    assert server.duplicates == 0
