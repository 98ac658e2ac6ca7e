"""POST /v1/messages/batch (issue 13): one result per item in order, per-item errors
naming `messages[i].field`, per-item idempotency keys, replays that create nothing.
A real `outbox serve` per backend (the module's shared server)."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.processes import TLS, OutboxProcess

BAD = {
    3: ({"to": ["not an address"]}, "invalid_address", "messages[3].to[0]"),
    250: ({"colour": "red"}, "unknown_field", "messages[250].colour"),
    499: ({"attachments": [{"filename": "setup.exe", "content_base64":
                            base64.b64encode(b"hi").decode()}]},
          "attachment_blocked", "messages[499].attachments[0].filename"),
}


def batch_body(run: str) -> dict[str, Any]:
    messages = []
    for index in range(500):
        item: dict[str, Any] = {"from": "shop@example.test", "to": f"c{index}@example.test",
                                "subject": f"Order {index}", "text": "Shipped.",
                                "idempotency_key": f"{run}-{index}"}
        item.update(BAD.get(index, ({}, "", ""))[0])
        messages.append(item)
    return {"messages": messages}


def all_messages(client: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/messages", params=params).json()
        found += page["messages"]
        cursor = page["next_cursor"]
        if not cursor:
            return found


def test_500_with_3_bad_items_then_a_replay_creates_nothing(shared_server: OutboxProcess) -> None:
    with shared_server.client() as client:
        before = len(all_messages(client))
        first = client.post("/v1/messages/batch", json=batch_body("b1"))
        after_first = len(all_messages(client))
        again = client.post("/v1/messages/batch", json=batch_body("b1"))
        after_again = len(all_messages(client))

    assert first.status_code == again.status_code == 200
    results = first.json()["results"]
    assert len(results) == 500
    errors = {i: r["error"] for i, r in enumerate(results) if "error" in r}
    assert {i: (e["code"], e["field"]) for i, e in errors.items()} == {
        i: (code, field) for i, (_, code, field) in BAD.items()}
    accepted = [r for r in results if "error" not in r]
    assert len(accepted) == 497 and len({r["id"] for r in accepted}) == 497
    assert all(r["status"] == "queued" and not r["replayed"] for r in accepted)
    assert after_first - before == 497

    replayed = again.json()["results"]
    assert [r.get("id") for r in replayed] == [r.get("id") for r in results]
    assert all(r["replayed"] for r in replayed if "error" not in r)
    assert after_again == after_first


def test_items_are_checked_one_by_one(shared_server: OutboxProcess) -> None:
    """A key reused with another body, a key used twice in one batch, and a
    non-object item are that item's error or replay; the others go on."""
    one = {"from": "shop@example.test", "to": "a@example.test", "text": "x",
           "idempotency_key": "same-key"}
    with shared_server.client() as client:
        response = client.post("/v1/messages/batch", json={"messages": [
            one, {**one, "text": "another body"}, one, "not an object",
            {"from": "shop@example.test", "to": "b@example.test", "text": "y"}]})
    results = response.json()["results"]
    assert response.status_code == 200 and len(results) == 5
    assert results[0]["replayed"] is False
    assert results[1]["error"]["code"] == "idempotency_key_reused"
    assert results[1]["error"]["field"] == "messages[1].idempotency_key"
    assert results[2]["id"] == results[0]["id"] and results[2]["replayed"] is True
    assert results[3]["error"]["field"] == "messages[3]"
    assert results[4]["status"] == "queued"


def test_the_batch_itself_is_checked(shared_server: OutboxProcess) -> None:
    item = {"from": "shop@example.test", "to": "a@example.test", "text": "x"}
    with shared_server.client() as client:
        too_many = client.post("/v1/messages/batch", json={"messages": [item] * 501})
        empty = client.post("/v1/messages/batch", json={"messages": []})
        schema = client.get("/openapi.json").json()
    with httpx.Client(base_url=shared_server.base_url, verify=TLS) as anonymous:
        unauthenticated = anonymous.post("/v1/messages/batch", json={"messages": [item]})
    assert (too_many.status_code, too_many.json()["error"]["field"]) == (422, "messages")
    assert (empty.status_code, empty.json()["error"]["field"]) == (422, "messages")
    assert unauthenticated.status_code == 401
    operation = schema["paths"]["/v1/messages/batch"]["post"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BatchOut"}
    components = schema["components"]["schemas"]
    assert "#/components/schemas/BatchMessageIn" in str(components["BatchIn"])
    assert "idempotency_key" in components["BatchMessageIn"]["properties"]


def test_an_idempotency_key_header_is_refused_not_ignored(
        shared_server: OutboxProcess) -> None:
    """A client retrying a batch with one Idempotency-Key got every message twice: the
    header is refused before anything is queued, and the document declares it so."""
    item = {"from": "shop@example.test", "to": "a@example.test", "text": "header key"}
    with shared_server.client() as client:
        before = len(all_messages(client))
        answers = [client.post("/v1/messages/batch", json={"messages": [item]},
                               headers={"Idempotency-Key": "batch-1"}) for _ in range(2)]
        after = len(all_messages(client))
        schema = client.get("/openapi.json").json()

    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == {
            "code": "idempotency_key_not_supported", "field": "Idempotency-Key",
            "message": "a batch takes an idempotency key per item: give each one in "
            "messages[i].idempotency_key, not in the Idempotency-Key header"}
    assert after == before
    header, = (parameter for parameter in schema["paths"]["/v1/messages/batch"]["post"][
        "parameters"] if parameter["in"] == "header")
    assert header["name"] == "idempotency-key" and not header["required"]
    assert "idempotency_key_not_supported" in header["description"]
