"""Issue 17: a large JSON submit is spooled and its base64 files decoded to the blob
store as it streams (api/spool.py), with the same answers as a small one: the file
delivered byte for byte, idempotent replays, bad base64 and blocked content refused
naming the field. Bodies are over [limits] json_spool_threshold (1 MB by default).
SQLite only: the blob store is the filesystem one (the contract suite covers both).
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import OutboxProcess, base_config, wait_until, write_config
from tests.smtpd import ScriptedServer

MB = 1_000_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OutboxProcess,
                                                                       ScriptedServer]]:
    directory: Path = tmp_path_factory.mktemp("spooled")
    with ScriptedServer() as sink:
        relay = {"name": "default", "host": "127.0.0.1", "port": sink.port, "security": "none"}
        config = base_config(directory, f"sqlite:///{directory}/outbox.db", [relay])
        process = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
        try:
            yield process, sink
        finally:
            process.stop(timeout=10)


def body(data: bytes, filename: str = "data.bin", **extra: Any) -> bytes:
    encoded = base64.encodebytes(data).decode()  # line-wrapped: JSON "\n" escapes
    return json.dumps({"from": "shop@example.test", "to": "ann@example.test",
                       "subject": "big", "text": "see attached", "attachments": [
                           {"filename": filename, "content_base64": encoded}], **extra}
                      ).encode()


def chunked(data: bytes, size: int = 300_000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def delivered_attachment(sink: ScriptedServer, message_id: str) -> bytes:
    wait_until(lambda: message_id in sink.message_ids, timeout=60, message="delivery")
    (received,) = [m for m in sink.messages if m.message_id == message_id]
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    (part,) = parsed.iter_attachments()
    return bytes(part.get_content())


@pytest.mark.parametrize("how", ["content-length", "chunked"])
def test_a_large_file_is_delivered_byte_for_byte(served: Any, how: str) -> None:
    outbox, sink = served
    data = os.urandom(6 * MB)
    raw = body(data)
    with outbox.client() as client:
        response = client.post("/v1/messages", content=raw if how == "content-length"
                               else chunked(raw), headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    received = delivered_attachment(sink, response.json()["message_id"])
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_replay_with_the_same_key_gives_the_message_back(served: Any) -> None:
    outbox, _ = served
    raw = body(os.urandom(2 * MB))
    with outbox.client() as client:
        headers = {"Content-Type": "application/json", "Idempotency-Key": "spooled-replay"}
        first = client.post("/v1/messages", content=raw, headers=headers)
        again = client.post("/v1/messages", content=chunked(raw), headers=headers)
        other = client.post("/v1/messages", content=body(os.urandom(2 * MB)), headers=headers)
    assert first.status_code == 202, first.text
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_bad_base64_in_a_large_body_is_refused_naming_the_field(served: Any) -> None:
    outbox, _ = served
    raw = body(os.urandom(2 * MB)).replace(b"\\n", b"*", 1)
    with outbox.client() as client:
        response = client.post("/v1/messages", content=raw,
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "attachments[0].content_base64"


def test_a_large_executable_is_refused_by_its_content(served: Any) -> None:
    outbox, _ = served
    header = bytearray(b"MZ" + b"\0" * 0x3E)
    header[0x3C:0x40] = (0x80).to_bytes(4, "little")
    executable = bytes(header) + b"\0" * 0x40 + b"PE\0\0" + os.urandom(2 * MB)
    with outbox.client() as client:
        response = client.post("/v1/messages", content=body(executable, "report.pdf"),
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "attachment_blocked" and "Windows executable" in error["message"]


def test_a_large_batch_is_spooled_item_by_item(served: Any) -> None:
    outbox, sink = served
    files = [os.urandom(MB), os.urandom(MB)]
    items = [json.loads(body(data)) for data in files]
    with outbox.client() as client:
        response = client.post("/v1/messages/batch", content=json.dumps(
            {"messages": items}).encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    for data, result in zip(files, results, strict=True):
        assert delivered_attachment(sink, result["message_id"]) == data


def test_a_client_that_stops_mid_body_costs_nothing(served: Any) -> None:
    outbox, _ = served
    raw = body(os.urandom(3 * MB))

    def half() -> Iterator[bytes]:
        yield raw[: len(raw) // 2]
        raise ConnectionError("the client gives up")

    with outbox.client() as client, pytest.raises((httpx.HTTPError, ConnectionError)):
        client.post("/v1/messages", content=half(), headers={"Content-Type":
                                                            "application/json"})
    with outbox.client() as client:
        assert client.get("/v1/messages", params={"limit": 1}).status_code == 200
