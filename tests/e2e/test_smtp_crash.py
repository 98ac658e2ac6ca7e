"""kill -9 of `outbox serve` after the SMTP client sent the final "." and before it
heard the 250: after a restart the client's retry, with the same Message-ID, is
accepted once and the message delivered once.

The window is made real on the wire, not with a delay in Outbox: the client talks
to `outbox serve` through `HoldingProxy`, a TCP relay on loopback that reads the
plaintext SMTP (AUTH without TLS is allowed on a loopback bind) and, at the end of
DATA, holds one of the two things that cross in that window:

- hold="dot": the client's final ".". The client has sent it; the server never
  reads it, so the message is not committed when the process is killed.
- hold="reply": the server's reply to the final ".". Outbox sends it only after
  the commit, so when the proxy holds it the message is on disk; the client never
  hears it, and the process is killed (after its delivery finished, so that the
  only duplicate a relay could see would come from the retry).

Both leave the client exactly where a crash before the 250 leaves it: no reply,
a dead connection, a message to send again.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.pg import database
from tests.processes import OutboxProcess, wait_until, write_config
from tests.smtpd import ScriptedServer, TlsCerts
from tests.submission import (
    PASSWORD,
    USER,
    queued,
    raw_message,
    server_certificate,
    smtp_address,
    submission_config,
)

END_OF_DATA = b"\r\n.\r\n"


class HoldingProxy:
    """Relays one client connection to `upstream` and holds what `hold` names at the
    end of DATA (see the module docstring); `held` is set once it holds."""

    def __init__(self, upstream: tuple[str, int], hold: Literal["dot", "reply"]) -> None:
        self.upstream = upstream
        self.hold = hold
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.in_data = threading.Event()   # the server said 354
        self.dot_sent = threading.Event()  # the final "." went to the server
        self.held = threading.Event()
        self.held_reply = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.upstream)
        threading.Thread(target=self._from_client, args=(client, server), daemon=True).start()
        self._from_server(server, client)

    def _from_client(self, client: socket.socket, server: socket.socket) -> None:
        stream = b""
        while chunk := _recv(client):
            stream = (stream + chunk)[-len(END_OF_DATA):]
            at_end = self.in_data.is_set() and stream.endswith(END_OF_DATA)
            if at_end and self.hold == "dot":
                server.sendall(chunk[:-3])  # everything but ".\r\n"
                self.held.set()
                return
            if at_end:
                self.dot_sent.set()  # before the dot leaves: its reply comes after
            server.sendall(chunk)

    def _from_server(self, server: socket.socket, client: socket.socket) -> None:
        while chunk := _recv(server):
            if self.dot_sent.is_set():
                self.held_reply = chunk
                self.held.set()
                continue  # never forwarded
            if chunk.startswith(b"354"):
                self.in_data.set()
            client.sendall(chunk)
        # The server died: so does the client's connection (shutdown, not close alone,
        # which would wait for the other thread's recv on the same socket).
        _hang_up(client)

    def close(self) -> None:
        self.listener.close()


def _hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already gone
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def send_through(proxy: HoldingProxy, raw: bytes, errors: list[BaseException]) -> None:
    """A client that authenticates (plaintext: loopback) and sends; it never hears 250."""
    try:
        with smtplib.SMTP("127.0.0.1", proxy.port, timeout=60) as client:
            client.login(USER, PASSWORD)
            client.sendmail("shop@example.test", ["ann@example.test"], raw)
    except BaseException as exc:  # recorded for the test to look at
        errors.append(exc)


def send_direct(address: tuple[str, int], raw: bytes) -> str:
    with smtplib.SMTP(*address, timeout=60) as client:
        client.login(USER, PASSWORD)
        client.mail("shop@example.test")
        client.rcpt("ann@example.test")
        code, reply = client.data(raw)
    assert code == 250, reply
    return reply.decode()


class HeldClient:
    """A client sending `raw` through a proxy that holds `hold`."""

    def __init__(self, address: tuple[str, int], raw: bytes,
                 hold: Literal["dot", "reply"]) -> None:
        self.proxy = HoldingProxy(address, hold)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=send_through, args=(self.proxy, raw, self.errors),
                                       daemon=True)
        self.thread.start()

    def wait_held(self) -> None:
        assert self.proxy.held.wait(30), "the proxy never reached the end of DATA"

    def wait_disconnected(self) -> None:
        self.thread.join(30)
        self.proxy.close()
        assert len(self.errors) == 1 and isinstance(self.errors[0],
                                                    smtplib.SMTPServerDisconnected)


def wait_sent(outbox: OutboxProcess, id: str) -> None:
    with outbox.client() as api:
        wait_until(lambda: api.get(f"/v1/messages/{id}").json()["status"] == "sent",
                   message=f"{id} sent")


@pytest.fixture(params=["sqlite", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    certs = TlsCerts(tmp_path)
    with ScriptedServer() as sink, database(request.param, tmp_path) as url:
        config = submission_config(tmp_path, url, sink, server_certificate(certs, tmp_path))
        yield {"sink": sink, "config": config,
               "path": write_config(tmp_path / "outbox.toml", config)}


def test_kill_9_between_the_final_dot_and_the_250(setup: dict[str, Any]) -> None:
    sink: ScriptedServer = setup["sink"]
    address = smtp_address(setup["config"])
    not_committed, first_id = raw_message(subject="killed before the commit")
    committed, second_id = raw_message(subject="killed after the commit")
    outbox = OutboxProcess(setup["path"], setup["config"]).start()

    clients = [HeldClient(address, not_committed, "dot"),
               HeldClient(address, committed, "reply")]
    for client in clients:
        client.wait_held()
    held = clients[1].proxy.held_reply.decode()
    assert held.startswith("250 2.0.0 Ok: queued as ")
    wait_sent(outbox, queued(held)[0])  # before the kill: see the module docstring
    outbox.kill()
    for client in clients:
        client.wait_disconnected()

    outbox.start()
    try:
        retries = {message_id: send_direct(address, raw)
                   for message_id, raw in ((first_id, not_committed), (second_id, committed))}
        for reply in retries.values():
            wait_sent(outbox, queued(reply)[0])
        with outbox.client() as api:
            listed = api.get("/v1/messages", params={"limit": 500}).json()["messages"]
    finally:
        outbox.stop(timeout=10)

    assert queued(retries[second_id])[0] == queued(held)[0]  # the committed one, once
    assert "not queued again" in retries[second_id]
    assert "not queued again" not in retries[first_id]
    assert sorted(m["message_id"] for m in listed) == sorted([first_id, second_id])
    assert sink.message_ids[first_id] == 1 and sink.message_ids[second_id] == 1
