"""What fuzzing found, pinned against a real `outbox serve`: ids and cursors are
validated as what they are (a 64-bit overflow is a 422 or a 404, never a 500),
and a feature that is not configured answers 409 naming the key to set."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Starter
from tests.processes import API_KEY, OutboxProcess, free_port

BIG = str(2**63)
HUGE = "9" * 40


@pytest.fixture
def server(start_outbox: Starter) -> OutboxProcess:
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    return start_outbox([relay], auth={"api_keys": [
        {"name": "ops", "key": API_KEY, "scopes": ["send", "read", "contacts", "admin"]}]})


def test_overflowing_ids_and_cursors_are_refused_not_crashed(server: OutboxProcess) -> None:
    with server.client() as client:
        answers = {
            "contact": client.get(f"/v1/contacts/{BIG}"),
            "contact huge": client.get(f"/v1/contacts/{HUGE}"),
            "delete": client.delete(f"/v1/contacts/{BIG}"),
            "replace": client.put(f"/v1/contacts/{BIG}", json={"emails": ["a@example.test"]}),
            "after": client.get("/v1/contacts", params={"after": BIG}),
            "member": client.put("/v1/groups/g", json={"members": [
                {"contact": int(BIG)}]}),
            "cursor": client.get("/v1/messages", params={"cursor": "A" * 401}),
        }
        largest = client.get(f"/v1/contacts/{2**63 - 1}")
    for what, response in answers.items():
        assert response.status_code == 422, (what, response.text)
        assert response.json()["error"]["field"], what
    assert largest.status_code == 404, largest.text


def test_ldap_sync_without_ldap_names_the_key(server: OutboxProcess) -> None:
    with server.client() as client:
        response = client.post("/v1/contacts/sync-ldap")
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "not_configured"
    assert "[ldap] url" in error["message"]
