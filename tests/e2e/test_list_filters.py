"""`GET /v1/messages` and `outbox queue ls` narrowed by recipient, relay, time and
subject, against a real `outbox serve` on SQLite and PostgreSQL; cursors page
through the filtered list only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import Starter
from tests.processes import OutboxProcess, free_port


def closed(name: str) -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": free_port(), "security": "none"}


@pytest.fixture
def server(start_outbox: Starter) -> OutboxProcess:
    # Nothing listens on either relay: the messages stay in the queue.
    return start_outbox([closed("default"), closed("eu")])


def submit(server: OutboxProcess, n: int) -> dict[str, Any]:
    body = {"from": "shop@example.test", "subject": f"Order {n}" if n % 2 else f"Invoice {n}",
            "to": ["ann@example.test", "Bob@Example.test"] if n % 3 == 0 else "ann@example.test",
            "text": "hi", **({"relay": "eu"} if n % 4 == 0 else {})}
    with server.client() as client:
        response = client.post("/v1/messages", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


def pages(server: OutboxProcess, **params: Any) -> list[str]:
    seen: list[str] = []
    with server.client() as client:
        cursor = None
        while True:
            query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
            response = client.get("/v1/messages", params=query)
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["messages"]) <= 2
            seen += [m["id"] for m in body["messages"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return seen


def test_filters_and_cursors_over_http_and_the_cli(server: OutboxProcess) -> None:
    ids = [submit(server, n)["id"] for n in range(9)]
    with server.client() as client:
        listed = client.get("/v1/messages", params={"limit": 500}).json()["messages"]
    created = {m["id"]: m["created_at"] for m in listed}
    newest_first = list(reversed(ids))

    def expect(numbers: list[int]) -> list[str]:
        return [ids[n] for n in sorted(numbers, reverse=True)]

    assert pages(server) == newest_first
    assert pages(server, recipient="bob@EXAMPLE.test") == expect([0, 3, 6])
    assert pages(server, relay="eu") == expect([0, 4, 8])
    assert pages(server, q="invoice") == expect([0, 2, 4, 6, 8])
    assert pages(server, q="invoice", relay="eu", recipient="bob@example.test") == expect([0])
    assert pages(server, since=created[ids[5]]) == expect([5, 6, 7, 8])
    assert pages(server, since=created[ids[2]], until=created[ids[5]]) == expect([2, 3, 4])
    assert pages(server, relay="nowhere") == []

    listing = server.cli("queue", "ls", "--json", "--recipient", "BOB@example.test",
                         "--search", "INVOICE", "--since", created[ids[1]])
    assert listing.returncode == 0, listing.stderr
    assert [m["id"] for m in json.loads(listing.stdout)] == expect([6])
    plain = server.cli("queue", "ls", "--relay", "eu", "--until", created[ids[4]])
    assert plain.returncode == 0, plain.stderr
    assert ids[0] in plain.stdout and ids[4] not in plain.stdout and ids[8] not in plain.stdout


@pytest.mark.parametrize(("params", "field"), [
    ({"since": "yesterday"}, "since"),
    ({"cursor": "not a cursor!"}, "cursor"),
    ({"cursor": "WyJ4IiwgMV0"}, "cursor"),
    ({"q": ""}, "q"),
    ({"recipient": "x" * 321}, "recipient"),
])
def test_bad_filters_are_422_naming_the_parameter(shared_server: OutboxProcess,
                                                   params: dict[str, str], field: str) -> None:
    with shared_server.client() as client:
        response = client.get("/v1/messages", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_a_bad_time_on_the_cli_is_one_line(shared_server: OutboxProcess) -> None:
    result = shared_server.cli("queue", "ls", "--since", "yesterday")
    assert result.returncode != 0
    assert "--since" in result.stderr and "Traceback" not in result.stderr
