"""What would break a client of `/v1` (docs/api-versioning.md): the differences between the
committed OpenAPI snapshot (`docs/openapi-v1.json`) and the live document that break it.

A change breaks a client when an operation, a parameter, a field or a response it used
is gone (a rename is a removal plus an addition), when a type changes, when something a
request could leave out becomes required, or when a response field it could count on
may be missing. Requests and responses are judged in opposite directions: a request may
accept more than before, a response may never give what was not promised. New paths,
methods, optional request fields, response fields and status codes are additions.

    python -m tests.api.openapi_diff            # live document vs the snapshot
    python -m tests.api.openapi_diff --update   # write the live document as the snapshot
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from tests.processes import TLS

SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "openapi-v1.json"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
Direction = Literal["request", "response"]
Schema = dict[str, Any]


class Diff:
    """Walks two documents, each with its own components, collecting breaking changes."""

    def __init__(self, old: Schema, new: Schema) -> None:
        self.old, self.new = old, new
        self.problems: list[str] = []
        self._seen: set[tuple[str, str, str]] = set()

    def run(self) -> list[str]:
        old_paths, new_paths = self.old.get("paths", {}), self.new.get("paths", {})
        for path, old_item in old_paths.items():
            if path not in new_paths:
                self.problems.append(f"{path}: path removed")
                continue
            for method in METHODS:
                if method in old_item:
                    where = f"{method.upper()} {path}"
                    if method not in new_paths[path]:
                        self.problems.append(f"{where}: method removed")
                    else:
                        self._operation(where, old_item[method], new_paths[path][method])
        return self.problems

    def _operation(self, where: str, old: Schema, new: Schema) -> None:
        self._parameters(where, old.get("parameters", []), new.get("parameters", []))
        self._body(where, old.get("requestBody"), new.get("requestBody"))
        new_responses = new.get("responses", {})
        for status, old_response in old.get("responses", {}).items():
            if status not in new_responses:
                self.problems.append(f"{where}: response {status} removed")
                continue
            self._content(f"{where} -> {status}", old_response.get("content", {}),
                          new_responses[status].get("content", {}), "response")

    def _parameters(self, where: str, old: list[Schema], new: list[Schema]) -> None:
        before = {(p["in"], p["name"]): p for p in old}
        after = {(p["in"], p["name"]): p for p in new}
        for key, param in before.items():
            label = f"{where}: {key[0]} parameter '{key[1]}'"
            if key not in after:
                self.problems.append(f"{label} removed")
                continue
            if after[key].get("required") and not param.get("required"):
                self.problems.append(f"{label} became required")
            self._schema(label, param.get("schema", {}), after[key].get("schema", {}),
                         "request")
        for key, param in after.items():
            if key not in before and param.get("required"):
                self.problems.append(f"{where}: new required {key[0]} parameter '{key[1]}'")

    def _body(self, where: str, old: Schema | None, new: Schema | None) -> None:
        if old is None:
            if new is not None and new.get("required"):
                self.problems.append(f"{where}: a request body became required")
            return
        if new is None:
            self.problems.append(f"{where}: request body removed")
            return
        if new.get("required") and not old.get("required"):
            self.problems.append(f"{where}: the request body became required")
        self._content(f"{where} body", old.get("content", {}), new.get("content", {}),
                      "request")

    def _content(self, where: str, old: Schema, new: Schema, direction: Direction) -> None:
        for media, old_media in old.items():
            if media not in new:
                self.problems.append(f"{where}: {media} removed")
            else:
                self._schema(where, old_media.get("schema", {}), new[media].get("schema", {}),
                             direction)

    def _schema(self, where: str, old: Schema, new: Schema, direction: Direction) -> None:
        # Each pair of schemas once: a recursive schema ends, and a shared one is
        # reported where it is first met.
        key = (direction, json.dumps(old, sort_keys=True), json.dumps(new, sort_keys=True))
        if key in self._seen:
            return
        self._seen.add(key)
        old, new = resolve(self.old, old), resolve(self.new, new)
        before, after = types(self.old, old), types(self.new, new)
        changed = before - after if direction == "request" else after - before
        if before and after and changed:
            self.problems.append(f"{where}: type changed from {sorted(before)} to "
                                 f"{sorted(after)}")
        self._fields(where, self._object(self.old, old), self._object(self.new, new),
                     direction)
        old_items, new_items = items(self.old, old), items(self.new, new)
        if old_items is not None and new_items is not None:
            self._schema(f"{where}[]", old_items, new_items, direction)

    def _object(self, doc: Schema, schema: Schema) -> tuple[dict[str, Schema], set[str]]:
        properties: dict[str, Schema] = {}
        required: set[str] = set()
        for variant in variants(doc, schema):
            properties.update(variant.get("properties", {}))
            required |= set(variant.get("required", []))
        return properties, required

    def _fields(self, where: str, old: tuple[dict[str, Schema], set[str]],
                new: tuple[dict[str, Schema], set[str]], direction: Direction) -> None:
        (before, old_required), (after, new_required) = old, new
        for name, schema in before.items():
            if name not in after:
                self.problems.append(f"{where}: field '{name}' removed")
                continue
            if direction == "request" and name in new_required - old_required:
                self.problems.append(f"{where}: field '{name}' became required")
            if direction == "response" and name in old_required - new_required:
                self.problems.append(f"{where}: field '{name}' may now be missing")
            self._schema(f"{where}.{name}", schema, after[name], direction)
        if direction == "request":
            for name in sorted(new_required - set(before)):
                self.problems.append(f"{where}: new required field '{name}'")


def resolve(doc: Schema, schema: Schema) -> Schema:
    """A `$ref` (or an allOf of one, as pydantic writes a described reference) followed."""
    while True:
        if "$ref" in schema:
            target: Any = doc
            for part in schema["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            schema = target
        elif len(schema.get("allOf", [])) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def variants(doc: Schema, schema: Schema) -> Iterator[Schema]:
    """The alternatives of an anyOf / oneOf (flattened), else the schema itself. An anyOf
    beside the schema's own type or properties narrows it (exactly one of two fields,
    say) and is no alternative."""
    schema = resolve(doc, schema)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if not alternatives or "type" in schema or "properties" in schema:
        yield schema
        return
    for alternative in alternatives:
        yield from variants(doc, alternative)


def types(doc: Schema, schema: Schema) -> set[str]:
    """The JSON types a schema allows; empty when it does not say (any)."""
    found: set[str] = set()
    for variant in variants(doc, schema):
        kind = variant.get("type")
        if kind is None and "properties" in variant:
            kind = "object"
        if kind is None:
            return set()
        found |= set(kind) if isinstance(kind, list) else {kind}
    return found


def items(doc: Schema, schema: Schema) -> Schema | None:
    for variant in variants(doc, schema):
        if variant.get("type") == "array":
            return dict(variant.get("items", {}))
    return None


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    return Diff(old, new).run()


def dump(document: Schema) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def live_document() -> Schema:
    """/openapi.json of a real `outbox serve` started for the occasion."""
    import httpx

    from tests.processes import OutboxProcess, base_config, free_port, write_config

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        relay = {"name": "default", "host": "127.0.0.1", "port": free_port(),
                 "security": "none"}
        config = base_config(directory, f"sqlite:///{directory / 'outbox.db'}", [relay])
        process = OutboxProcess(write_config(directory / "outbox.toml", config), config)
        process.start()
        try:
            document: Schema = httpx.get(f"{process.base_url}/openapi.json", timeout=30,
                                         verify=TLS).json()
        finally:
            process.stop(timeout=10)
    return document


def main(argv: list[str]) -> int:
    document = live_document()
    if "--update" in argv:
        SNAPSHOT.write_text(dump(document))
        print(f"wrote {SNAPSHOT}")
        return 0
    problems = breaking_changes(json.loads(SNAPSHOT.read_text()), document)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} breaking change(s) against {SNAPSHOT.name}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
