"""SPEC §2: "same key still in flight → 409". A request whose body is still arriving holds
its Idempotency-Key (api/inflight.py): a second request with that key, alone or as a batch
item, is answered 409 idempotency_key_in_flight with Retry-After: 1, and once the first
has answered, the same retry is its replay. A real `outbox serve` on SQLite: the claims
live in the process, whatever the database."""

from __future__ import annotations

import base64
import http.client
import json
import select
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import API_KEY, OutboxProcess, base_config, free_port, wait_until, write_config

MESSAGE = {"from": "shop@example.test", "to": "ann@example.test", "subject": "Order 7",
           "text": "Thanks"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutboxProcess]:
    directory: Path = tmp_path_factory.mktemp("in-flight")
    # Nothing listens on the relay's port: submitted mail waits, nothing leaves.
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    config = base_config(directory, f"sqlite:///{directory / 'outbox.db'}", [relay])
    process = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
    try:
        yield process
    finally:
        process.stop(timeout=10)


class HeldRequest:
    """A POST whose body's first half is sent at once and its rest only on `finish()`:
    in flight in the server until then (unless the server answered it early)."""

    def __init__(self, server: OutboxProcess, path: str, key: str, body: bytes) -> None:
        host, port = server.config["server"]["bind"].rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        self.connection.putrequest("POST", path)
        for name, value in (("Authorization", f"Bearer {API_KEY}"),
                            ("Content-Type", "application/json"), ("Idempotency-Key", key),
                            ("Content-Length", str(len(body)))):
            self.connection.putheader(name, value)
        self.connection.endheaders(body[:len(body) // 2])
        self.rest = body[len(body) // 2:]

    def answered_early(self) -> bool:
        assert self.connection.sock is not None
        return bool(select.select([self.connection.sock], [], [], 0)[0])

    def finish(self) -> tuple[int, dict[str, Any]]:
        self.connection.send(self.rest)
        response = self.connection.getresponse()
        try:
            return response.status, json.loads(response.read())
        finally:
            self.connection.close()


def held(server: OutboxProcess, path: str, key: str, body: dict[str, Any]) -> HeldRequest:
    """The held request, once the server holds its key: a probe with the same key and a
    body that is no message (422, nothing queued) is answered 409. A held request that
    came while a probe held the key was answered 409 itself: it is sent again."""
    def send() -> HeldRequest:
        return HeldRequest(server, path, key, json.dumps(body).encode())

    request = send()

    def holding() -> bool:
        nonlocal request
        if request.answered_early():
            request.connection.close()
            request = send()
        return client.post(path, json=[], headers={"Idempotency-Key": key}).status_code == 409

    with server.client() as client:
        wait_until(holding, timeout=30, message="the first request in flight")
    return request


def assert_in_flight(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_in_flight"
    assert "still being processed" in error["message"] and "\n" not in error["message"]


def test_a_second_request_while_the_first_is_in_flight_is_409_then_a_replay(
        server: OutboxProcess) -> None:
    first = held(server, "/v1/messages", "order-7", MESSAGE)
    with server.client() as client:
        assert_in_flight(client.post("/v1/messages", json=MESSAGE,
                                     headers={"Idempotency-Key": "order-7"}))
        batch = client.post("/v1/messages/batch", json={"messages": [
            {**MESSAGE, "idempotency_key": "order-7"},
            {**MESSAGE, "idempotency_key": "order-8"}]})
        assert batch.status_code == 200, batch.text
        blocked, other = batch.json()["results"]
        assert blocked["error"]["code"] == "idempotency_key_in_flight"
        assert blocked["error"]["field"] == "messages[0].idempotency_key"
        assert other["replayed"] is False  # the other items go on

        status, answer = first.finish()
        assert status == 202, answer
        retry = client.post("/v1/messages", json=MESSAGE,
                            headers={"Idempotency-Key": "order-7"})
        assert retry.status_code == 200, retry.text
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json()["id"] == answer["id"]
        (again,) = client.post("/v1/messages/batch", json={"messages": [
            {**MESSAGE, "idempotency_key": "order-7"}]}).json()["results"]
        assert again["replayed"] is True and again["id"] == answer["id"]
        queued = client.get("/v1/messages", params={"q": "Order 7", "limit": 10}).json()
        assert len(queued["messages"]) == 2  # order-7 once, order-8


def test_a_resend_in_flight_holds_its_key_too(server: OutboxProcess) -> None:
    with server.client() as client:
        original = client.post("/v1/messages", json={**MESSAGE, "subject": "Resent"}).json()
    path = f"/v1/messages/{original['id']}/resend"
    first = held(server, path, "resend-1", {"confirm": True})
    with server.client() as client:
        assert_in_flight(client.post(path, json={"confirm": True},
                                     headers={"Idempotency-Key": "resend-1"}))
        status, answer = first.finish()
        assert status == 202, answer
        retry = client.post(path, json={"confirm": True}, headers={"Idempotency-Key": "resend-1"})
        assert retry.status_code == 200 and retry.json()["id"] == answer["id"]


def test_another_key_is_not_held(server: OutboxProcess) -> None:
    first = held(server, "/v1/messages", "order-9", MESSAGE)
    with server.client() as client:
        other = client.post("/v1/messages", json={**MESSAGE, "subject": "Order 10"},
                            headers={"Idempotency-Key": "order-10"})
        assert other.status_code == 202, other.text
    assert first.finish()[0] == 202


def test_a_raw_message_in_flight_holds_its_key_too(server: OutboxProcess) -> None:
    raw = (b"From: shop@example.test\r\nTo: ann@example.test\r\nSubject: Built\r\n\r\n"
           b"Thanks\r\n")
    body = {"rcpt_to": ["ann@example.test"], "data": base64.b64encode(raw).decode()}
    path = "/v1/messages/raw"
    first = held(server, path, "raw-1", body)
    with server.client() as client:
        assert_in_flight(client.post(path, json=body, headers={"Idempotency-Key": "raw-1"}))
        status, answer = first.finish()
        assert status == 202, answer
        retry = client.post(path, json=body, headers={"Idempotency-Key": "raw-1"})
        assert retry.status_code == 200 and retry.json()["id"] == answer["id"]
