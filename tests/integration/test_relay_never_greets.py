"""A relay that accepts the TCP connection but never sends its greeting, with a real
worker and store. A tester saw the guidance "did not answer the connection ... a
firewall silently dropping the traffic", though the connection was made: the words now
say it connected and no greeting came. `connect_timeout` is shortened to 1 s because
the test waits that long for the greeting that never comes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_relay_governor import Clock, Node
from tests.pg import database

from outbox.config import RelaySettings, Settings
from outbox.core import guidance
from outbox.core.model import EventType, MessageStatus
from outbox.service import Outbox


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep it open, say nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_connected_but_no_greeting_is_not_called_a_firewall(
        backend: str, tmp_path: Path, silent_port: int) -> None:
    with database(backend, tmp_path) as url:
        settings = Settings(database={"url": url}, relays=[RelaySettings(
            name="r", host="127.0.0.1", port=silent_port, security="none")],
            delivery={"poll_interval": "50ms", "connect_timeout": "1s"})
        store = (await Outbox.open(settings)).store
        clock = Clock()
        n = Node(Outbox(settings, store, clock=clock), clock)
        try:
            (message_id,) = await n.submit(1)
            for _ in range(100):
                await asyncio.sleep(0.1)
                detail = await n.outbox.messages.get(message_id)
                if any(e.type is EventType.DEFERRED for e in detail.events):
                    break
        finally:
            n.worker.stop()
            await asyncio.gather(n.task, return_exceptions=True)
            await n.outbox.close()
    assert detail.message.status is MessageStatus.DEFERRED
    deferred: Any = next(e for e in detail.events if e.type is EventType.DEFERRED)
    assert deferred.guidance == guidance.GREETING_TIMEOUT
    words = guidance.describe(deferred.guidance)
    assert "accepted the connection but sent no greeting" in words.explanation
    assert "firewall" not in words.explanation
