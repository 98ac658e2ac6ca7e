"""Listening sockets (outbox.listening): connections accepted from them have Nagle's
algorithm off, both through the event loop's own server (SMTP submission, bounce
intake) and through the API's guarded accept loop; a taken port is one clear line."""

from __future__ import annotations

import asyncio
import socket

import pytest

from outbox.api.connections import ConnectionGuard, accept_connections
from outbox.config import ServerSettings
from outbox.errors import ConfigError
from outbox.listening import listen


class Probe(asyncio.Protocol):
    """Reports the accepted connection's TCP_NODELAY."""

    def __init__(self, seen: asyncio.Future[int]) -> None:
        self.seen = seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if not self.seen.done():
            self.seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        transport.close()


async def nodelay_of_accepted(serve: str) -> int:
    loop = asyncio.get_running_loop()
    listener = listen("server", "127.0.0.1:0", "127.0.0.1", 0, backlog=8)
    seen: asyncio.Future[int] = loop.create_future()
    if serve == "event loop":
        server = await loop.create_server(lambda: Probe(seen), sock=listener)
        task = None
    else:
        server = None
        task = asyncio.create_task(accept_connections(
            listener, lambda: Probe(seen), ConnectionGuard(ServerSettings())))
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        value = await asyncio.wait_for(seen, 10)
        writer.close()
        return value
    finally:
        if server is not None:
            server.close()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        listener.close()


@pytest.mark.parametrize("serve", ["event loop", "api accept loop"])
async def test_accepted_connections_have_nagle_off(serve: str) -> None:
    assert await nodelay_of_accepted(serve) != 0


def test_a_taken_port_is_one_line_naming_the_key_and_the_fix() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as refused:
            listen("bounces", f"127.0.0.1:{port}", "127.0.0.1", port, backlog=8)
    assert refused.value.one_line() == (
        f"bounces.bind: 127.0.0.1:{port} is already in use by another program (stop it, or "
        "choose another address with [bounces] bind or OUTBOX_BOUNCES__BIND)")
