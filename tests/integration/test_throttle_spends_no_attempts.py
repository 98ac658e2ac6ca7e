"""A relay that keeps saying "slow down" at MAIL, with a real worker, a real store and a
scripted aiosmtpd relay, on an injected clock. A tester saw `421 4.7.0 Slow down` (and
`451 4.7.1 Rate limit exceeded, slow down`) spend an attempt each time and fail the
message at max_attempts, while its events said Outbox slows down and there was nothing
to do. SPEC F3: such mail waits without spending attempts, up to max_age.

Retry settings are the production defaults (max_attempts 20); the relay refuses more
times than that. Only `poll_interval` is shortened (the worker's idle sleep is real
time, while the test moves the clock to each message's next attempt)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_relay_governor import Clock, Node
from tests.pg import database
from tests.smtpd import ScriptedServer, drop, reply

from outbox.config import RelaySettings, Settings
from outbox.core import guidance
from outbox.core.decide import THROTTLED_NOT_COUNTED
from outbox.core.model import EventType, MessageStatus
from outbox.service import Outbox
from outbox.store.values import Message, MessageDetail

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])

DEFAULT_MAX_ATTEMPTS = Settings().retry.max_attempts


@pytest.fixture
async def node(backend: str, tmp_path: Path) -> AsyncIterator[Any]:
    with database(backend, tmp_path) as url:
        opened: list[Node] = []

        async def open_one(relay: RelaySettings) -> Node:
            clock = Clock()
            settings = Settings(database={"url": url}, relays=[relay], delivery={
                "poll_interval": "50ms", "helo_name": "client.test"})
            store = (await Outbox.open(settings)).store
            opened.append(Node(Outbox(settings, store, clock=clock), clock))
            return opened[-1]

        yield open_one
        for one in opened:
            one.worker.stop()
            await asyncio.gather(one.task, return_exceptions=True)
            await one.outbox.close()


async def run_until_final(n: Node, message_id: str) -> Any:
    """Move the clock to each next attempt until the message is final."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        await n.settle([message_id])
        (message,) = await n.messages([message_id])
        if message.status in (MessageStatus.SENT, MessageStatus.FAILED):
            return message
        assert message.status is MessageStatus.DEFERRED, message.status
        assert message.due_at is not None
        n.clock.now = max(n.clock.now, message.due_at)
    raise AssertionError("the message never became final")


@pytest.mark.long(20)
async def one_message_through(node: Any, script: list[Any]
                              ) -> tuple[ScriptedServer, Message, MessageDetail]:
    """One message through a relay playing `script`, run to its final status: the relay,
    the message and its detail."""
    server = ScriptedServer(script=script).start()
    try:
        n = await node(RelaySettings(name="r", host="127.0.0.1", port=server.port,
                                     security="none"))
        (message_id,) = await n.submit(1)
        message = await run_until_final(n, message_id)
        detail = await n.outbox.messages.get(message_id)
    finally:
        server.stop()
    return server, message, detail


@pytest.mark.parametrize("slow_down", ["421 4.7.0 Slow down",
                                       "451 4.7.1 Rate limit exceeded, slow down"])
async def test_slow_down_more_times_than_max_attempts_then_the_message_is_sent(
        node: Any, slow_down: str) -> None:
    refusals = DEFAULT_MAX_ATTEMPTS + 5
    server, message, detail = await one_message_through(
        node, [reply("MAIL", slow_down, times=refusals)])
    assert message.status is MessageStatus.SENT
    assert server.commands.count("MAIL") == refusals + 1
    assert len(server.message_ids) == 1 and server.duplicates == 0
    assert message.attempts < DEFAULT_MAX_ATTEMPTS  # only the try that delivered counted
    tries = [e for e in detail.events if e.type is EventType.ATTEMPT]
    assert len(tries) == refusals + 1
    assert all(THROTTLED_NOT_COUNTED in (e.detail or "") for e in tries[:-1])
    deferred = [e for e in detail.events if e.type is EventType.DEFERRED]
    words = guidance.describe(deferred[0].guidance or "")
    assert "without spending attempts" in words.next_step  # and that is what happened


async def test_a_relay_that_hangs_up_after_every_final_dot_ends_saying_it_probably_has_it(
        node: Any) -> None:
    """`drop("DATA")`: the relay saw the Message-ID on every try, so the words that end
    the message must not just say "fix it, then retry" (that sends another copy)."""
    from rich.console import Console

    from outbox.cli.tables import print_detail
    from outbox.views.render import detail_view

    server, message, detail = await one_message_through(node, [drop("DATA")])
    assert message.status is MessageStatus.FAILED
    assert message.attempts == DEFAULT_MAX_ATTEMPTS
    assert list(server.message_ids.values()) == [DEFAULT_MAX_ATTEMPTS]
    (recipient,) = message.recipients
    assert recipient.guidance == guidance.GAVE_UP_UNCERTAIN
    console = Console(width=200, record=True)
    print_detail(console, detail_view(detail))
    shown = console.export_text()
    assert "the relay probably received the message" in shown
    assert "Message-ID" in shown and "retrying sends another copy" in shown
    assert message.message_id in shown
