"""Which app answers which path, with the UI on (the default): / and /ui lead to the UI,
/ui/... is the UI's, every other path the API's, unknown ones in the API's error shape.
runtime/http.py sends API paths to the API directly, past the app around both (issue
15: a submit's cost); these are the answers that must not change."""

from __future__ import annotations

import pytest

from tests.processes import OutboxProcess


@pytest.mark.parametrize("path", ["/", "/ui"])
def test_the_root_and_ui_lead_to_the_ui(shared_server: OutboxProcess, path: str) -> None:
    with shared_server.client() as api:
        answer = api.get(path)
    assert answer.status_code == 307, answer.text
    assert answer.headers["location"] == "/ui/"


def test_ui_pages_are_the_uis(shared_server: OutboxProcess) -> None:
    with shared_server.client() as api:
        answer = api.get("/ui/login")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert 'name="csrf_token"' in answer.text


@pytest.mark.parametrize("path", ["/uix", "/v1/nosuch", "/nosuch/ui/login"])
def test_other_paths_are_the_apis_in_its_error_shape(shared_server: OutboxProcess,
                                                     path: str) -> None:
    with shared_server.client() as api:
        answer = api.get(path)
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"]["code"] == "not_found"


def test_the_api_answers_its_own_paths(shared_server: OutboxProcess) -> None:
    with shared_server.client() as api:
        health = api.get("/healthz")
        listed = api.get("/v1/messages")
    assert health.status_code == 200, health.text
    assert listed.status_code == 200, listed.text
    assert set(listed.json()) == {"messages", "next_cursor"}
