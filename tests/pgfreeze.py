"""A database lost just after a change committed, for tests of what the answer says then.

`FreezeAfterCommit` is a loopback TCP relay to a PostgreSQL cluster of the test's own
(tests/pgcluster.py): once the statement carrying a marker has committed, it passes no
more client bytes, so whatever Outbox reads next waits; the test then really stops the
cluster, and that read meets a server that is gone:

    with freezable_cluster() as cluster, FreezeAfterCommit(cluster.port) as relay:
        url = relayed(cluster.create_database("outbox"), cluster, relay)
        answer = while_the_database_goes(cluster, relay, b"retry requested", act)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from tests.pgcluster import PgCluster
from tests.processes import wait_until
from tests.smtpd import reply

T = TypeVar("T")


IDLE = b"Z\x00\x00\x00\x05I"  # ReadyForQuery, not in a transaction: a COMMIT has ended


class FreezeAfterCommit:
    """A loopback TCP relay to PostgreSQL. Once a client has sent `marker` (a bound
    value of the statement under test) and its transaction has committed, no more
    client bytes are passed on, on any connection, until `thaw()`; the server's bytes
    still are, so the commit's answer arrives and, when the cluster stops, its FATAL."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = 0
        self.marker: bytes | None = None
        self.frozen = threading.Event()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FreezeAfterCommit:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def freeze_after_commit_of(self, marker: bytes) -> None:
        self.marker = marker

    def thaw(self) -> None:
        self.marker = None
        self.frozen.clear()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, client_in: asyncio.StreamReader,
                     client_out: asyncio.StreamWriter) -> None:
        if self.frozen.is_set():  # as the stopped cluster will: refused
            client_out.close()
            return
        try:
            server_in, server_out = await asyncio.open_connection(*self.target)
        except OSError:  # the cluster is stopped
            client_out.close()
            return
        watching: list[bool] = []  # [True] once this connection sent the marker
        tasks = [asyncio.create_task(self._upstream(client_in, server_out, watching)),
                 asyncio.create_task(self._downstream(server_in, client_out, watching))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_out, server_out):
            with contextlib.suppress(OSError):
                writer.close()

    async def _upstream(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                        watching: list[bool]) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if self.frozen.is_set():
                    continue  # held back for good: the cluster stops meanwhile
                if self.marker is not None and self.marker in data:
                    watching.append(True)
                sink.write(data)
                await sink.drain()

    async def _downstream(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                          watching: list[bool]) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if watching and IDLE in data and self.marker is not None:
                    self.frozen.set()  # before the client hears of the commit
                    watching.clear()
                sink.write(data)
                await sink.drain()


@contextlib.contextmanager
def freezable_cluster() -> Iterator[PgCluster]:
    with PgCluster.create() as cluster:
        # A connection whose start-up packet the frozen relay held back keeps a server
        # process waiting for it that long (60 s by default), and the stop waits for it.
        cluster.psql("ALTER SYSTEM SET authentication_timeout = '1s'")
        cluster.psql("SELECT pg_reload_conf()")
        yield cluster


def relayed(url: str, cluster: PgCluster, relay: FreezeAfterCommit) -> str:
    """`url` (a database of `cluster`) reached through `relay`."""
    return url.replace(f":{cluster.port}/", f":{relay.port}/")


def while_the_database_goes(cluster: PgCluster, relay: FreezeAfterCommit, marker: bytes,
                            act: Callable[[], T]) -> T:
    """`act()`'s result, the cluster stopped once the change carrying `marker` has
    committed (while the answer is still being prepared); started again afterwards."""
    relay.freeze_after_commit_of(marker)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(act)
        assert relay.frozen.wait(30), "the change never committed"
        cluster.stop()
        result = answer.result(90)
    relay.thaw()
    cluster.start()
    return result


# Two messages to act on during an outage: one held by the internal-domains policy (to
# cancel), one failed by the sink's 550 (to retry; the 550 comes once, so it then goes).
INTERNAL_DOMAINS = ["corp.test"]


def fails_once() -> Any:
    """The sink's script: a 550 to gone@example.test, once (a new one each test: it
    counts its replies)."""
    return reply("RCPT", "550 5.1.1 No such user", recipient="gone@example.test", times=1)


def status(api: httpx.Client, id: str) -> str | None:
    """The message's status; None while the database cannot be read."""
    answer = api.get(f"/v1/messages/{id}")
    return answer.json()["status"] if answer.status_code == 200 else None


def one_held_one_failed(api: httpx.Client) -> tuple[str, str]:
    """The ids of a held message and of a failed one (a serve with INTERNAL_DOMAINS,
    relaying to a sink with fails_once())."""
    held = api.post("/v1/messages", json={
        "from": "shop@example.test", "to": ["ann@corp.test"], "subject": "Held",
        "text": "Hi"}).json()["id"]
    failed = api.post("/v1/messages", json={
        "from": "shop@example.test", "to": ["gone@example.test"], "subject": "Failed",
        "text": "Hi"}).json()["id"]
    wait_until(lambda: status(api, failed) == "failed", message="the 550 to fail the message")
    return held, failed
