"""SPEC §2: an error's `field` is the JSON path of the bad value. In a list that is the
item (`scopes[1]`), not the whole list: a client with ten scopes, events or addresses is
told which one to fix. Against a real `outbox serve`."""

from __future__ import annotations

from typing import Any

import httpx

from tests.processes import OutboxProcess


def refused(response: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_an_unknown_scope_names_its_item(server: OutboxProcess) -> None:
    with server.client() as client:
        error = refused(client.post("/v1/keys", json={"name": "fieldpath",
                                                      "scopes": ["read", "sned"]}))
        listed = client.get("/v1/keys").json()["keys"]
    assert error["field"] == "scopes[1]"
    assert error["message"].startswith("unknown scope 'sned'")
    assert "fieldpath" not in [k["name"] for k in listed]


def test_an_unknown_scope_inside_a_comma_list_names_that_item(server: OutboxProcess) -> None:
    """The first unknown scope in the order given, not in alphabetical order."""
    with server.client() as client:
        error = refused(client.post("/v1/keys", json={"name": "fieldpath",
                                                      "scopes": ["send", "zz", "read,aa"]}))
    assert (error["field"], error["message"].split(" (")[0]) == ("scopes[1]",
                                                                 "unknown scope 'zz'")


def test_an_unknown_webhook_event_names_its_item(server: OutboxProcess) -> None:
    with server.client() as client:
        error = refused(client.post("/v1/webhooks", json={
            "url": "https://hooks.example.com/h", "events": ["sent", "nope"]}))
        endpoints = client.get("/v1/webhooks").json()["endpoints"]
    assert error["field"] == "events[1]"
    assert error["message"].startswith("unknown event 'nope'")
    assert endpoints == []


def test_no_event_at_all_still_names_the_list(server: OutboxProcess) -> None:
    with server.client() as client:
        error = refused(client.post("/v1/webhooks", json={
            "url": "https://hooks.example.com/h", "events": [" ", ","]}))
    assert error["field"] == "events"


def test_a_contact_address_given_twice_names_the_repeat(server: OutboxProcess) -> None:
    """Addresses are compared as the book compares them (the domain's case ignored)."""
    emails = ["ann@example.test", "bob@example.test", "ANN@EXAMPLE.TEST"]
    with server.client() as client:
        added = refused(client.post("/v1/contacts", json={"emails": emails}))
        kept = client.post("/v1/contacts", json={"emails": ["ann@example.test"]}).json()
        replaced = refused(client.put(f"/v1/contacts/{kept['id']}", json={"emails": emails}))
        after = client.get(f"/v1/contacts/{kept['id']}").json()
    for error in (added, replaced):
        assert error["field"] == "emails[2]"
        assert "emails[0]" in error["message"]
    assert after["emails"] == ["ann@example.test"]


def test_a_group_that_would_contain_itself_names_the_member(server: OutboxProcess) -> None:
    with server.client() as client:
        assert client.put("/v1/groups/inner", json={"members": [
            {"address": "ann@example.test"}]}).status_code == 200
        assert client.put("/v1/groups/outer", json={"members": [
            {"group": "inner"}]}).status_code == 200
        error = refused(client.put("/v1/groups/inner", json={"members": [
            {"address": "ann@example.test"}, {"group": "outer"}]}), status=409)
        inner = [g for g in client.get("/v1/groups").json() if g["name"] == "inner"]
    assert error["code"] == "group_cycle"
    assert error["field"] == "members[1]"
    assert "inner > outer > inner" in error["message"]
    assert inner[0]["members"] == [{"contact": None, "group": None,
                                    "address": "ann@example.test"}]
