"""`[delivery] dedupe_message_id` through a real `outbox serve`: the identical request
posted again under the client's Message-ID is a replay (200, the first message) even
when Outbox makes something anew for each submission (the one-click unsubscribe link of
`list_unsubscribe`, a file's download link), and a changed request under that
Message-ID is still 422 message_id_reused. SQLite: the decision is the service's."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import OutboxProcess, base_config, free_port, write_config

NEWS = {"from": "shop@example.test", "to": "ann@example.test", "subject": "News",
        "text": "Hello", "list_unsubscribe": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutboxProcess]:
    directory: Path = tmp_path_factory.mktemp("message-id")
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    config = base_config(directory, f"sqlite:///{directory / 'outbox.db'}", [relay],
                         limits={"link_threshold": "1KB"})
    process = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
    try:
        yield process
    finally:
        process.stop(timeout=10)


def post_twice(server: OutboxProcess, body: dict[str, Any],
               again: dict[str, Any] | None = None) -> tuple[httpx.Response, httpx.Response]:
    with server.client() as client:
        first = client.post("/v1/messages", json=body)
        assert first.status_code == 202, first.text
        return first, client.post("/v1/messages", json=again or body)


def test_the_same_list_unsubscribe_request_again_is_a_replay(server: OutboxProcess) -> None:
    body = {**NEWS, "headers": {"Message-ID": "<news-1@shop.example.test>"}}
    first, second = post_twice(server, body)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]


def test_another_list_unsubscribe_message_under_the_message_id_is_refused(
        server: OutboxProcess) -> None:
    body = {**NEWS, "headers": {"Message-ID": "<news-2@shop.example.test>"}}
    _, second = post_twice(server, body, {**body, "text": "Hello again"})
    assert second.status_code == 422, second.text
    assert second.json()["error"]["code"] == "message_id_reused"


def test_the_same_file_sent_as_a_link_again_is_a_replay(server: OutboxProcess) -> None:
    report = base64.b64encode(bytes(range(256)) * 10).decode()  # 2,560 bytes: over 1KB
    body = {"from": "shop@example.test", "to": "ann@example.test", "subject": "Report",
            "text": "Attached.", "headers": {"Message-ID": "<report-1@shop.example.test>"},
            "attachments": [{"filename": "report.bin", "content_base64": report}]}
    first, second = post_twice(server, body)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
