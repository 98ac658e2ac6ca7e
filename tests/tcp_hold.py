"""A loopback TCP relay to PostgreSQL that can hold back the server's hang-up, or hang
up itself right after a statement reached the server.

When PostgreSQL ends a session it sends a FATAL error and closes the socket. asyncpg
reads the error first; until it also sees the close, the connection looks alive and idle
to a pool. In a real shutdown that window is a loop iteration or two; through this
relay, with `holding` set, it lasts until the test lets go (`release()`), so what a
client does inside it can be tested at will:

    with HoldingRelay(5432) as relay:
        url = f"postgresql://postgres@127.0.0.1:{relay.port}/db"
        relay.holding = True   # server closes are passed on only at release()
        relay.cut_after = EXECUTE  # the next Execute (or QUERY) goes through, its reply
                                   # never comes back: the client's connection is cut
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from types import TracebackType

EXECUTE = ord("E")  # frontend message type of the extended protocol's Execute
QUERY = ord("Q")  # of a simple query (asyncpg's BEGIN and COMMIT)
READY_FOR_QUERY = b"Z\x00\x00\x00\x05"  # its type, then its length (5)


class HoldingRelay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.holding = False
        self.cut_after: int | None = None  # EXECUTE or QUERY
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._released: asyncio.Event | None = None
        self._closed_upstream = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> HoldingRelay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait_for_server_close(self, timeout: float = 30.0) -> bool:
        """Until a server has closed a session (its last bytes passed on)."""
        return self._closed_upstream.wait(timeout)

    def release(self) -> None:
        """Pass on the closes held back, and every later one at once."""
        self.holding = False
        if self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    async def _listen(self) -> None:
        self._released = asyncio.Event()
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    async def _relay(self, client_in: asyncio.StreamReader,
                     client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection(*self.target)
        replied = asyncio.Event()  # set by the reply to a cut Execute, which is dropped
        cutting: list[bool] = []  # [True] once the client's Execute went through to be cut
        upstream = asyncio.create_task(self._client_to_server(client_in, server_out,
                                                              cutting, replied))
        downstream = asyncio.create_task(self._server_to_client(server_in, client_out,
                                                                cutting, replied))
        await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
        if downstream.done() and not cutting:  # the server hung up
            self._closed_upstream.set()
            if self.holding:
                assert self._released is not None
                await self._released.wait()
        for task in (upstream, downstream):
            task.cancel()
        for writer in (client_out, server_out):
            with contextlib.suppress(OSError):
                writer.close()

    async def _client_to_server(self, source: asyncio.StreamReader,
                                sink: asyncio.StreamWriter, cutting: list[bool],
                                replied: asyncio.Event) -> None:
        """Until either end closes, or (`cut_after`) until the server has answered a
        message of that type, whose answer the client never gets."""
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                cut = self.cut_after is not None and _has_message(data, self.cut_after)
                if cut:
                    self.cut_after = None
                    cutting.append(True)
                sink.write(data)
                await sink.drain()
                if cut:
                    await replied.wait()  # the server ran it (and committed, if it does)
                    return

    @staticmethod
    async def _server_to_client(source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                                cutting: list[bool], replied: asyncio.Event) -> None:
        dropped = b""
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if not cutting:
                    sink.write(data)
                    await sink.drain()
                    continue
                dropped += data
                # ReadyForQuery: sent once the Sync after the Execute is done, the
                # commit of an implicit transaction included.
                if READY_FOR_QUERY in dropped:
                    replied.set()
                    return


def _has_message(data: bytes, wanted: int) -> bool:
    """Whether a chunk of frontend messages (type byte, then a length that counts
    itself) holds one of type `wanted`. asyncpg writes each request whole, so chunks start at a
    message; the start-up packet, which has no type byte, does not parse as one."""
    at = 0
    while at + 5 <= len(data):
        kind, length = data[at], struct.unpack("!I", data[at + 1:at + 5])[0]
        if kind == wanted:
            return True
        if length < 4:
            return False
        at += 1 + length
    return False
