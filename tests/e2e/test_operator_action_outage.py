"""A retry or cancel that PostgreSQL stored before it stopped is never answered "nothing
was stored": the routes wrote the change, then read the message back for the answer,
and a database lost in between made the read-back's 503 claim the change was not made.
Now the answer is the message as the change left it (found by a stranger pass).

A real `outbox serve` on a PostgreSQL cluster of the test's own (tests/pgcluster.py),
reached through a relay that stops passing on Outbox's statements the moment the
change's transaction has committed; the cluster is then really stopped, so the
read-back meets a server that is gone."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import relay_for
from tests.pgcluster import PgCluster
from tests.processes import OutboxProcess, base_config, wait_until
from tests.smtpd import ScriptedServer, reply

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


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    with PgCluster.create() as cluster:
        # A connection whose start-up packet the frozen relay held back keeps a server
        # process waiting for it that long (60 s by default), and the stop waits for it.
        cluster.psql("ALTER SYSTEM SET authentication_timeout = '1s'")
        cluster.psql("SELECT pg_reload_conf()")
        yield cluster


def _act_while_the_database_goes(api: httpx.Client, cluster: PgCluster,
                                 relay: FreezeAfterCommit, path: str,
                                 marker: bytes) -> httpx.Response:
    """POST `path`; once the change it makes has committed, stop the cluster (the
    answer is still being prepared), and return the answer."""
    relay.freeze_after_commit_of(marker)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(api.post, path)
        assert relay.frozen.wait(30), "the change never committed"
        cluster.stop()
        response = answer.result(60)
    relay.thaw()
    cluster.start()
    return response


def _assert_done(answer: httpx.Response, status: str) -> None:
    """200 with the message as the change left it, not a 503 saying nothing was done;
    no events (their read failed), as the route's description says."""
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["events"]) == (status, [])


def test_a_retry_and_a_cancel_stored_before_postgresql_stopped_are_answered_done(
        tmp_path: Path, own_cluster: PgCluster, launch: Any) -> None:
    url = own_cluster.create_database("outbox")
    script = reply("RCPT", "550 5.1.1 No such user", recipient="gone@example.test", times=1)
    with (ScriptedServer(script=[script]) as sink,
          FreezeAfterCommit(own_cluster.port) as relay):
        relayed = url.replace(f":{own_cluster.port}/", f":{relay.port}/")
        config = base_config(tmp_path, relayed, [relay_for(sink)],
                             internal_domains=["corp.test"])
        outbox: OutboxProcess = launch(config)
        with outbox.client() as api:
            held = api.post("/v1/messages", json={  # the internal-domains policy holds it
                "from": "shop@example.test", "to": ["ann@corp.test"], "subject": "Held",
                "text": "Hi"}).json()["id"]
            failed = api.post("/v1/messages", json={
                "from": "shop@example.test", "to": ["gone@example.test"],
                "subject": "Failed", "text": "Hi"}).json()["id"]
            wait_until(lambda: api.get(f"/v1/messages/{failed}").json()["status"] == "failed",
                       message="the 550 to fail the message")

            cancelled = _act_while_the_database_goes(
                api, own_cluster, relay, f"/v1/messages/{held}/cancel", b"cancelled")
            wait_until(lambda: api.get(f"/v1/messages/{held}").status_code == 200,
                       timeout=60, interval=0.5, message="PostgreSQL back")
            assert api.get(f"/v1/messages/{held}").json()["status"] == "cancelled"  # stored
            _assert_done(cancelled, "cancelled")

            retried = _act_while_the_database_goes(
                api, own_cluster, relay, f"/v1/messages/{failed}/retry", b"retry requested")
            _assert_done(retried, "queued")
            # It was stored: the retry goes out once PostgreSQL is back (the 550 was once).
            wait_until(lambda: api.get(f"/v1/messages/{failed}").json().get("status")
                       == "sent", timeout=60, interval=0.5, message="the retried message sent")
    assert [m.rcpt_tos for m in sink.messages] == [("gone@example.test",)]
