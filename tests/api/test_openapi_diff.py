"""The diff behind the versioning policy (docs/api-versioning.md), on small documents:
what breaks a /v1 client is found, additions pass."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from tests.api.openapi_diff import SNAPSHOT, breaking_changes
from tests.processes import TLS, OutboxProcess

BASE: dict[str, Any] = {
    "paths": {
        "/v1/things": {
            "get": {
                "parameters": [{"in": "query", "name": "limit", "required": False,
                                "schema": {"type": "integer"}}],
                "responses": {"200": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ThingOut"}}}}},
            },
            "post": {
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ThingIn"}}}},
                "responses": {"201": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ThingOut"}}}}},
            },
        },
    },
    "components": {"schemas": {
        "ThingIn": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "tags": {"type": "array", "items": {"type": "string"}},
        }},
        "ThingOut": {"type": "object", "required": ["id", "name"], "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "parts": {"type": "array", "items": {"$ref": "#/components/schemas/Part"}},
        }},
        "Part": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer"}}},
    }},
}


def changed(edit: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    edit(document)
    return document


def schemas(document: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"]
    return found


def test_identical_documents_have_no_breaking_change() -> None:
    assert breaking_changes(BASE, copy.deepcopy(BASE)) == []


def test_a_removed_response_field_fails() -> None:
    new = changed(lambda d: schemas(d)["ThingOut"]["properties"].pop("name"))
    problems = breaking_changes(BASE, new)
    assert any("field 'name' removed" in p and "GET /v1/things" in p for p in problems), problems


def test_a_removed_request_field_fails() -> None:
    new = changed(lambda d: schemas(d)["ThingIn"]["properties"].pop("note"))
    assert any("field 'note' removed" in p for p in breaking_changes(BASE, new))


def test_a_renamed_field_fails() -> None:
    def rename(d: dict[str, Any]) -> None:
        props = schemas(d)["Part"]["properties"]
        props["bytes"] = props.pop("size")
        schemas(d)["Part"]["required"] = ["bytes"]

    problems = breaking_changes(BASE, changed(rename))
    assert any("parts[].size" in p or "field 'size' removed" in p for p in problems), problems


@pytest.mark.parametrize("where", ["ThingOut", "ThingIn"])
def test_a_changed_type_fails(where: str) -> None:
    new = changed(lambda d: schemas(d)[where]["properties"]["name"].update(type="integer"))
    assert any("type changed" in p for p in breaking_changes(BASE, new))


def test_a_nested_type_change_fails() -> None:
    new = changed(lambda d: schemas(d)["Part"]["properties"]["size"].update(type="string"))
    assert any("parts[].size: type changed" in p for p in breaking_changes(BASE, new))


def test_an_optional_request_field_made_required_fails() -> None:
    new = changed(lambda d: schemas(d)["ThingIn"]["required"].append("tags"))
    assert any("'tags' became required" in p for p in breaking_changes(BASE, new))


def test_an_optional_parameter_made_required_fails() -> None:
    new = changed(lambda d: d["paths"]["/v1/things"]["get"]["parameters"][0].update(
        required=True))
    assert any("'limit' became required" in p for p in breaking_changes(BASE, new))


def test_a_removed_path_and_a_removed_method_fail() -> None:
    assert any("method removed" in p for p in breaking_changes(
        BASE, changed(lambda d: d["paths"]["/v1/things"].pop("post"))))
    assert any("path removed" in p for p in breaking_changes(
        BASE, changed(lambda d: d["paths"].pop("/v1/things"))))


def test_a_response_field_that_may_now_be_missing_fails() -> None:
    new = changed(lambda d: schemas(d)["ThingOut"]["required"].remove("name"))
    assert any("may now be missing" in p for p in breaking_changes(BASE, new))


def test_a_response_that_may_now_be_null_fails_a_request_that_accepts_null_passes() -> None:
    nullable = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    out = changed(lambda d: schemas(d)["ThingOut"]["properties"].update(name=nullable))
    into = changed(lambda d: schemas(d)["ThingIn"]["properties"].update(name=nullable))
    assert breaking_changes(BASE, out)
    assert breaking_changes(BASE, into) == []


def test_additions_pass() -> None:
    def grow(d: dict[str, Any]) -> None:
        d["paths"]["/v1/other"] = {"get": {"responses": {"200": {}}}}
        d["paths"]["/v1/things"]["delete"] = {"responses": {"204": {}}}
        d["paths"]["/v1/things"]["get"]["parameters"].append(
            {"in": "query", "name": "q", "required": False, "schema": {"type": "string"}})
        d["paths"]["/v1/things"]["get"]["responses"]["429"] = {}
        schemas(d)["ThingIn"]["properties"]["extra"] = {"type": "boolean"}
        schemas(d)["ThingOut"]["properties"]["extra"] = {"type": "boolean"}
        schemas(d)["ThingOut"]["required"].append("extra")
        schemas(d)["ThingIn"]["properties"]["name"]["maxLength"] = 100

    assert breaking_changes(BASE, changed(grow)) == []


def test_a_rule_across_fields_is_no_change_of_type() -> None:
    """An anyOf beside an object's properties ("exactly one of") narrows it: its fields
    are still there with their types."""
    def one_of(d: dict[str, Any]) -> None:
        schemas(d)["ThingIn"]["anyOf"] = [
            {"required": ["note"], "properties": {"tags": {"type": "null"}}},
            {"required": ["tags"], "properties": {"note": {"type": "null"}}}]

    assert breaking_changes(BASE, changed(one_of)) == []
    old = changed(one_of)
    new = changed(one_of)
    schemas(new)["ThingIn"]["properties"].pop("note")
    assert any("field 'note' removed" in p for p in breaking_changes(old, new))


def test_a_new_required_request_field_or_parameter_fails() -> None:
    def demand(d: dict[str, Any]) -> None:
        schemas(d)["ThingIn"]["properties"]["owner"] = {"type": "string"}
        schemas(d)["ThingIn"]["required"].append("owner")
        d["paths"]["/v1/things"]["get"]["parameters"].append(
            {"in": "query", "name": "q", "required": True, "schema": {"type": "string"}})

    problems = breaking_changes(BASE, changed(demand))
    assert any("new required field 'owner'" in p for p in problems), problems
    assert any("new required query parameter 'q'" in p for p in problems), problems


def test_the_live_api_only_grows_from_the_committed_snapshot(server: OutboxProcess) -> None:
    """docs/api-versioning.md: nothing in docs/openapi-v1.json is removed, renamed or
    retyped by the running API. After an addition, refresh the snapshot with
    `python -m tests.api.openapi_diff --update`."""
    live = httpx.get(f"{server.base_url}/openapi.json", timeout=30, verify=TLS).json()
    snapshot = json.loads(SNAPSHOT.read_text())
    assert breaking_changes(snapshot, live) == []
    assert any(path.startswith("/v1/") for path in snapshot["paths"])
