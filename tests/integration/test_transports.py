"""`outbox.transports.writable` on real connections of both event loops: uvloop's
transports do not derive from asyncio's classes, and must pass all the same."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
import uvloop

from outbox.transports import writable


@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop],
                         ids=["asyncio", "uvloop"])
def test_a_connected_transport_is_writable(new_loop: Callable[[], asyncio.AbstractEventLoop]
                                           ) -> None:
    async def connect() -> bytes:
        ours, theirs = socket.socketpair()
        with theirs:
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
                asyncio.Protocol, ours)
            writer = writable(transport)
            assert writer is transport
            writer.write(b"hello")
            writer.close()
            await asyncio.sleep(0.05)
            return theirs.recv(16)

    with asyncio.Runner(loop_factory=new_loop) as runner:
        assert runner.run(connect()) == b"hello"


def test_no_transport_or_a_read_only_one_is_not_writable() -> None:
    assert writable(None) is None
    assert writable(asyncio.ReadTransport()) is None
