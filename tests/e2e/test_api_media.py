"""The form of a request, against a real `outbox serve`: a JSON route given another
content type answers 415 and queues nothing; 405 names the allowed methods."""

from __future__ import annotations

import json

import pytest

from tests.processes import OutboxProcess

GOOD = {"from": "shop@example.test", "to": "a@example.test", "subject": "Hi", "text": "hi"}


def count(server: OutboxProcess) -> int:
    with server.client() as client:
        return len(client.get("/v1/messages", params={"limit": 500}).json()["messages"])


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "application/xml",
    "multipart/form-data; boundary=x"])
def test_a_json_route_refuses_other_content_types(shared_server: OutboxProcess,
                                                  content_type: str | None) -> None:
    before = count(shared_server)
    headers = {"Content-Type": content_type} if content_type else {}
    with shared_server.client() as client:
        response = client.post("/v1/messages", content=json.dumps(GOOD), headers=headers)
        batch = client.post("/v1/messages/batch", content=json.dumps({"messages": [GOOD]}),
                            headers=headers)
    for refused in (response, batch):
        assert refused.status_code == 415, refused.text
        error = refused.json()["error"]
        assert error["code"] == "unsupported_media_type"
        assert error["field"] == "Content-Type" and "JSON" in error["message"]
    assert count(shared_server) == before


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x",
                                          "application/x-www-form-urlencoded"])
def test_a_form_is_told_how_to_send_a_message_and_its_files(shared_server: OutboxProcess,
                                                             content_type: str) -> None:
    """What `curl -F` (and `curl -d`) send: the answer says to send JSON, and where a
    message's files go."""
    with shared_server.client() as client:
        message = client.post("/v1/messages", content=b"from=a", headers={
            "Content-Type": content_type}).json()["error"]["message"]
        other = client.post("/v1/webhooks", content=b"url=x", headers={
            "Content-Type": content_type}).json()["error"]["message"]
    assert "'Content-Type: application/json'" in message and "POST /v1/uploads" in message
    assert "'Content-Type: application/json'" in other and "/v1/uploads" not in other


@pytest.mark.parametrize("content_type", ["application/json",
                                          "application/json; charset=utf-8"])
def test_json_is_accepted(shared_server: OutboxProcess, content_type: str) -> None:
    with shared_server.client() as client:
        response = client.post("/v1/messages", content=json.dumps(GOOD),
                               headers={"Content-Type": content_type})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/v1/messages", {"GET", "HEAD", "POST"}),
    ("PUT", "/v1/messages/abc", {"GET", "HEAD"}),
    ("GET", "/v1/uploads", {"POST"}),
    ("PATCH", "/v1/contacts/1", {"GET", "HEAD", "PUT", "DELETE"}),
])
def test_405_carries_allow(shared_server: OutboxProcess, method: str, path: str,
                           allowed: set[str]) -> None:
    with shared_server.client() as client:
        response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert set(response.headers["Allow"].split(", ")) == allowed
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_every_published_path_refuses_the_methods_its_document_does_not_list(
        shared_server: OutboxProcess) -> None:
    """The methods a path takes come from the routers, not from the OpenAPI document
    (building it costs a third of a second at a process's first templated request); the
    two must agree for every path published as it is, including those a template would
    also match (`/v1/messages/batch` and `/v1/messages/{id}`)."""
    with shared_server.client() as client:
        document = client.get("/openapi.json").json()
        # Routes name the error shape by reference (api/app.py's ERRORS): it must be there.
        assert "ErrorOut" in document["components"]["schemas"]
        paths = document["paths"]
        literal = {path: {m.upper() for m in operations} for path, operations in paths.items()
                   if "{" not in path}
        assert "/v1/messages/batch" in literal and "/v1/contacts/import" in literal
        for path, published in literal.items():
            allowed = published | ({"HEAD"} if "GET" in published else set())
            for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - published:
                response = client.request(method, path)
                assert response.status_code == 405, (method, path, response.text)
                assert set(response.headers["Allow"].split(", ")) == allowed, (method, path)
