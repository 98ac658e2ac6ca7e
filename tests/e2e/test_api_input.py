"""Bad input on the API gets the 4xx of SPEC §2 naming the field, and the queue is unchanged."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.processes import API_KEY, READ_ONLY_KEY, TLS, OutboxProcess

GOOD: dict[str, Any] = {"from": "Shop <shop@example.test>", "to": ["a@example.test"],
                        "subject": "Hello", "text": "hi"}


def queue_size(server: OutboxProcess) -> int:
    with server.client() as client:
        return len(client.get("/v1/messages", params={"limit": 500}).json()["messages"])


@pytest.fixture
def server(shared_server: OutboxProcess) -> OutboxProcess:
    with shared_server.client() as client:
        assert client.post("/v1/messages", json=GOOD).status_code == 202
    return shared_server


BAD_BODIES = [
    ({**GOOD, "to": ["a@example.test", "b@example.test", "not-an-address"]}, 422, "to[2]"),
    ({**GOOD, "to": "a@example.test, b@@example.test"}, 422, "to[1]"),
    ({**GOOD, "from": "nobody"}, 422, "from"),
    ({**GOOD, "subject": "Hi\r\nBcc: victim@example.test"}, 422, "subject"),
    ({**GOOD, "subject": "Hi\nthere"}, 422, "subject"),
    ({**GOOD, "headers": {"X-Evil\r\nBcc": "v"}}, 422, "headers.X-Evil\r\nBcc"),
    ({**GOOD, "headers": {"X-Note": "a\r\nBcc: victim@example.test"}}, 422, "headers.X-Note"),
    ({**GOOD, "headers": {"X-Note": "a\nb"}}, 422, "headers.X-Note"),
    ({**GOOD, "surprise": 1}, 422, "surprise"),
    ({**GOOD, "attachments": [{"filename": "a.txt", "content_base64": "aGk=", "zzz": 1}]},
     422, "attachments[0].zzz"),
    ({"to": ["a@example.test"], "text": "hi"}, 422, "from"),
    ({**GOOD, "attachments": [{"filename": "run.exe", "content_base64": "TVo="}]},
     422, "attachments[0].filename"),
    ({**GOOD, "attachments": [{"filename": "x.txt", "content_base64": "%%%"}]},
     422, "attachments[0].content_base64"),
    ({**GOOD, "relay": "nope"}, 422, "relay"),
    ({**GOOD, "to": 5}, 422, "to"),
    # Values Python's parser reads and Outbox could not keep (core/json_values.py): a lone
    # surrogate made every read of the message, and every list page holding it, a 500.
    ({**GOOD, "metadata": {"note": "\ud800"}}, 422, "metadata.note"),
    ({**GOOD, "text": "a\udc00b"}, 422, "text"),
    ({**GOOD, "headers": {"X-Note": "\ud800"}}, 422, "headers.X-Note"),
    ({**GOOD, "metadata": {"amounts": [1.5, float("nan")]}}, 422, "metadata.amounts[1]"),
    ({**GOOD, "metadata": {"big": float("inf")}}, 422, "metadata.big"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_BODIES)
def test_bad_body_names_the_field_and_queues_nothing(server: OutboxProcess, body: Any,
                                                      status: int, field: str) -> None:
    before = queue_size(server)
    with server.client() as client:  # as Python writes JSON: lone surrogates escaped, NaN
        response = client.post("/v1/messages", content=json.dumps(body),
                               headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert error["code"] and error["message"]
    assert "\n" not in error["message"]
    assert queue_size(server) == before


def test_blocked_attachment_has_its_code(server: OutboxProcess) -> None:
    body = {**GOOD, "attachments": [{"filename": "invoice.pdf.exe", "content_base64": "TVo="}]}
    with server.client() as client:
        response = client.post("/v1/messages", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "attachment_blocked"


def test_invalid_json_is_400(server: OutboxProcess) -> None:
    before = queue_size(server)
    with server.client() as client:
        response = client.post("/v1/messages", content=b'{"from": "a@b.test", "to": [',
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert queue_size(server) == before


def test_an_empty_body_is_named_as_such(server: OutboxProcess) -> None:
    with server.client() as client:
        response = client.post("/v1/messages", content=b"",
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == {"code": "missing_field", "message":
                                        "the request has no body: send a JSON object"}


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY},
])
def test_missing_or_unknown_key_is_401(server: OutboxProcess, headers: dict[str, str]) -> None:
    before = queue_size(server)
    response = httpx.post(f"{server.base_url}/v1/messages", json=GOOD, headers=headers, verify=TLS)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert queue_size(server) == before


def test_wrong_scope_is_403(server: OutboxProcess) -> None:
    before = queue_size(server)
    with server.client(READ_ONLY_KEY) as client:
        response = client.post("/v1/messages", json=GOOD)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
        raw = client.post("/v1/messages/raw", json={"rcpt_to": ["a@example.test"],
                                                     "data": "RnJvbTogYUBleGFtcGxlLnRlc3QK"})
        assert raw.status_code == 403, raw.text
        assert client.get("/v1/messages").status_code == 200
    assert queue_size(server) == before


def test_oversized_body_is_413_before_parsing(server: OutboxProcess) -> None:
    # The shared server's limits.max_message_size is 200KB.
    before = queue_size(server)
    with server.client() as client:
        response = client.post("/v1/messages", json={**GOOD, "text": "x" * 250_000})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "message_too_large"
        # Not even valid JSON: refused for its size before anything parses it.
        response = client.post("/v1/messages", content=b"{" * 250_000,
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        # A built message counts against the same limit, in base64.
        response = client.post("/v1/messages/raw", json={"rcpt_to": ["a@example.test"],
                                                          "data": "QUFB" * 62_500})
        assert response.status_code == 413
        assert "limits.max_message_size" in response.json()["error"]["message"]
    assert queue_size(server) == before


def test_unknown_message_is_404(server: OutboxProcess) -> None:
    with server.client() as client:
        response = client.get("/v1/messages/doesnotexist")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_openapi_and_healthz(server: OutboxProcess) -> None:
    assert httpx.get(f"{server.base_url}/healthz", verify=TLS).json()["status"] == "ok"
    spec = httpx.get(f"{server.base_url}/openapi.json", verify=TLS).json()
    assert "/v1/messages" in spec["paths"]
    assert "/v1/messages/{id}/attempts" in spec["paths"]


def test_a_batch_item_with_a_lone_surrogate_is_refused_and_the_others_queued(
        server: OutboxProcess) -> None:
    bad = {**GOOD, "metadata": {"\udc00": 1}}
    with server.client() as client:
        response = client.post("/v1/messages/batch", content=json.dumps({"messages": [GOOD, bad]}),
                               headers={"Content-Type": "application/json"})
        listed = client.get("/v1/messages", params={"limit": 500})

    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert first["status"] == "queued"
    assert second["error"]["field"] == "messages[1].metadata"
    assert "lone UTF-16 surrogate" in second["error"]["message"]
    assert listed.status_code == 200


def test_shape_errors_speak_json_not_pydantic(server: OutboxProcess) -> None:
    """A stranger pass got "Input should be a valid list" for "to": 5 (a string is taken
    too) and "a valid dictionary or instance of BatchMessageIn" for a batch item."""
    with server.client() as client:
        number = client.post("/v1/messages", json={**GOOD, "to": 5})
        item = client.post("/v1/messages/batch", json={"messages": [5]})

    assert number.json()["error"]["message"] == (
        "to: give a list of addresses, or one string of them separated by commas or semicolons")
    (refused,) = item.json()["results"]
    assert refused["error"] == {"code": "invalid_value", "field": "messages[0]",
                                "message": "messages[0]: must be a JSON object"}
