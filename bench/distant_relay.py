"""Delivery to a relay that is not on this machine: the same drain as
bench/throughput.py, through a proxy that holds every byte for half a round trip
each way, with the relay offering PIPELINING and with that line taken out of
its EHLO reply.

    .venv/bin/python bench/distant_relay.py [--messages 400] [--rtt-ms 20] [--reps 2]
                                            [--connections 4]

On loopback a round trip costs microseconds, so how many a message needs hardly
shows; to a hosted relay (tens of milliseconds away) it decides the rate per
connection. Prints msg/s per mode and rep, SQLite, one `outbox worker` process,
the sink of tests/smtpd.py. Figures only; no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.processes import write_config  # noqa: E402

from bench.throughput import config_for, drain, fill_queue, sink_count, start_sink  # noqa: E402

PIPELINING_LINE = b"250-PIPELINING\r\n"


class DelayProxy:
    """A TCP proxy on a free loopback port, in its own thread: every chunk is held
    `one_way` seconds in each direction (latency, not a bandwidth limit). With
    `pipelining` False, the relay's PIPELINING line never reaches the client."""

    def __init__(self, upstream_port: int, one_way: float) -> None:
        self.upstream_port = upstream_port
        self.one_way = one_way
        self.pipelining = True
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _connection(self, client_r: asyncio.StreamReader,
                          client_w: asyncio.StreamWriter) -> None:
        relay_r, relay_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        strip = (lambda data: data) if self.pipelining else (
            lambda data: data.replace(PIPELINING_LINE, b""))
        await asyncio.gather(self._pump(client_r, relay_w, lambda data: data),
                             self._pump(relay_r, client_w, strip), return_exceptions=True)
        for writer in (client_w, relay_w):
            writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    edit: Callable[[bytes], bytes]) -> None:
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, data = await held.get()
                if not data:
                    writer.write_eof() if writer.can_write_eof() else writer.close()
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()

        releasing = asyncio.create_task(release())
        try:
            while data := await reader.read(65536):
                held.put_nowait((time.monotonic() + self.one_way, edit(data)))
        finally:
            held.put_nowait((time.monotonic() + self.one_way, b""))
            await _quietly(releasing)


async def _quietly(task: Awaitable[None]) -> None:
    with suppress(OSError, RuntimeError):
        await task


def run_once(proxy: DelayProxy, pipelining: bool, args: argparse.Namespace,
             counts: Path, directory: Path, rep: int) -> float:
    proxy.pipelining = pipelining
    url = f"sqlite:///{directory}/rep{rep}-{int(pipelining)}.db"
    config = config_for(url, proxy.port, directory)
    config["relays"][0]["max_connections"] = args.connections
    path = write_config(directory / f"rep{rep}-{int(pipelining)}.toml", config)
    asyncio.run(fill_queue(config, args.messages))
    time.sleep(0.6)  # the sink rewrites its counters every 0.5 s
    return drain(path, counts, sink_count(counts), args.messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sink, port, counts = start_sink(directory)
        stack.callback(sink.wait, 10)
        stack.callback(sink.terminate)
        proxy = DelayProxy(port, args.rtt_ms / 2000).start()
        stack.callback(proxy.stop)
        print(f"relay {args.rtt_ms:g} ms away (round trip), {args.connections} connections, "
              f"{args.messages} messages of 2 KB, SQLite", flush=True)
        rates: dict[bool, list[float]] = {True: [], False: []}
        for rep in range(1, args.reps + 1):
            for pipelining in (False, True):
                rate = run_once(proxy, pipelining, args, counts, directory, rep)
                rates[pipelining].append(rate)
                mode = "PIPELINING offered" if pipelining else "no PIPELINING     "
                print(f"rep {rep}  {mode}  {rate:7.1f} msg/s", flush=True)
        plain, piped = statistics.median(rates[False]), statistics.median(rates[True])
        print(f"median: without {plain:.1f} msg/s, with {piped:.1f} msg/s "
              f"({piped / plain:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
