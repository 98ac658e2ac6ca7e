"""Recipients end to end, on SQLite and PostgreSQL, against real `outbox serve`
processes and two real SMTP sinks: an external relay and an internal one.

- a mixed list (`;`, `,`, a quoted display name with a comma) is three recipients,
  delivered, and the To header keeps "Doe, John";
- recipients routed to different relays are split, one delivery per relay;
- the internal-domains policy holds a message that would leak (by a route or by
  the client's choice of relay) and a correct route delivers;
- names from the address book expand, and each recipient says how it was resolved;
- autocomplete ranks what was just used; a CSV import answers with its report.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from email import policy
from email.headerregistry import AddressHeader
from typing import Any

import pytest

from tests.pg import database
from tests.processes import (
    API_KEY,
    READ_ONLY_KEY,
    OutboxProcess,
    base_config,
    wait_until,
    write_config,
)
from tests.smtpd import ScriptedServer

FINAL = {"sent", "failed", "partially_sent", "cancelled"}


class Env:
    def __init__(self, outbox: OutboxProcess, external: ScriptedServer,
                 internal: ScriptedServer) -> None:
        self.outbox, self.external, self.internal = outbox, external, internal

    def post(self, path: str, body: Any = None, *, content: bytes | None = None,
             expect: int = 200) -> Any:
        with self.outbox.client() as client:
            response = (client.post(path, content=content) if content is not None
                        else client.post(path, json=body))
        assert response.status_code == expect, response.text
        return response.json()

    def put(self, path: str, body: Any) -> Any:
        with self.outbox.client() as client:
            response = client.put(path, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str) -> Any:
        with self.outbox.client() as client:
            response = client.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def submit(self, **body: Any) -> dict[str, Any]:
        body.setdefault("from", "Shop <shop@example.test>")
        body.setdefault("subject", "Hello")
        body.setdefault("text", "hi")
        return dict(self.post("/v1/messages", body, expect=202))

    def wait_status(self, id: str, statuses: set[str]) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            message = self.get(f"/v1/messages/{id}")
            return message if message["status"] in statuses else None

        return dict(wait_until(reached, timeout=30, message=f"message {id} in {statuses}"))

    @staticmethod
    def received(sink: ScriptedServer, message_id: str) -> list[Any]:
        return [m for m in sink.messages if m.message_id == message_id]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("recipients")
    external, internal = ScriptedServer().start(), ScriptedServer().start()
    relays = [{"name": "external", "host": "127.0.0.1", "port": external.port,
               "security": "none"},
              {"name": "internal", "host": "127.0.0.1", "port": internal.port,
               "security": "none", "internal": True}]
    with database(request.param, directory) as url:
        config = base_config(
            directory, url, relays,
            routes=[{"match": "*.corp.test", "relay": "internal"},
                    {"match": "corp.test", "relay": "internal"}],
            internal_domains=["corp.test", "secret.test"],
            auth={"api_keys": [{"name": "app", "key": API_KEY,
                                "scopes": ["send", "read", "contacts"]},
                               {"name": "viewer", "key": READ_ONLY_KEY, "scopes": ["read"]}]})
        outbox = OutboxProcess(write_config(directory / "outbox.toml", config), config).start()
        try:
            yield Env(outbox, external, internal)
        finally:
            outbox.stop(timeout=10)
            external.stop()
            internal.stop()


def test_a_mixed_list_is_three_recipients_and_the_display_name_survives(env: Env) -> None:
    accepted = env.submit(to='A <a@x.test>; "Doe, John" <j@x.test>, c@x.test')
    message = env.wait_status(accepted["id"], FINAL)
    assert message["status"] == "sent"
    assert [(r["address"], r["status"], r["provenance"]) for r in message["recipients"]] == [
        ("a@x.test", "sent", "typed"), ("j@x.test", "sent", "typed"),
        ("c@x.test", "sent", "typed")]
    (received,) = env.received(env.external, accepted["message_id"])
    assert sorted(received.rcpt_tos) == ["a@x.test", "c@x.test", "j@x.test"]
    parsed = email.message_from_bytes(received.data, policy=policy.default)
    to = parsed["To"]
    assert isinstance(to, AddressHeader)
    assert [(a.display_name, a.addr_spec) for a in to.addresses] == [
        ("A", "a@x.test"), ("Doe, John", "j@x.test"), ("", "c@x.test")]
    assert '"Doe, John" <j@x.test>' in str(to)


def test_recipients_on_two_relays_are_split_into_one_delivery_each(env: Env) -> None:
    accepted = env.submit(to=["out@x.test", "ann@mail.corp.test"], cc="boss@corp.test")
    message = env.wait_status(accepted["id"], FINAL)
    assert message["status"] == "sent"
    assert {r["address"]: r["relay"] for r in message["recipients"]} == {
        "out@x.test": "external", "ann@mail.corp.test": "internal", "boss@corp.test": "internal"}
    (outside,) = env.received(env.external, accepted["message_id"])
    (inside,) = env.received(env.internal, accepted["message_id"])
    assert outside.rcpt_tos == ("out@x.test",)
    assert sorted(inside.rcpt_tos) == ["ann@mail.corp.test", "boss@corp.test"]
    attempts = env.get(f"/v1/messages/{accepted['id']}/attempts")
    assert sorted(attempts[0]["relay"].split(",")) == ["external", "internal"]


def test_the_policy_holds_a_leak_by_request_or_by_route_and_a_good_route_delivers(
        env: Env) -> None:
    requested = env.submit(to="ann@corp.test", relay="external")
    misrouted = env.submit(to=["ok@x.test", "spy@secret.test"])
    routed = env.submit(to="ann@corp.test")
    assert requested["status"] == misrouted["status"] == "held"

    held = env.get(f"/v1/messages/{requested['id']}")
    assert "internal_domains[0] ('corp.test')" in held["hold_reason"]
    assert "the client requested relay 'external'" in held["hold_reason"]
    event = held["events"][0]
    assert event["type"] == "held" and "Internal recipient routed" in event["guidance"]
    reason = env.get(f"/v1/messages/{misrouted['id']}")["hold_reason"]
    assert "internal_domains[1] ('secret.test')" in reason
    assert "routed to relay 'external'" in reason

    sent = env.wait_status(routed["id"], FINAL)
    assert sent["status"] == "sent"
    assert env.received(env.internal, routed["message_id"])
    assert not env.received(env.external, routed["message_id"])

    # Releasing the message that asked for the external relay routes it by the rules.
    env.post(f"/v1/messages/{requested['id']}/retry")
    assert env.wait_status(requested["id"], FINAL)["status"] == "sent"
    assert env.received(env.internal, requested["message_id"])
    # No rule sends secret.test through an internal relay: it stays held, and says why.
    with env.outbox.client() as client:
        refused = client.post(f"/v1/messages/{misrouted['id']}/retry")
    assert refused.status_code == 409
    assert "secret.test" in refused.json()["error"]["message"]
    assert not env.received(env.external, misrouted["message_id"])
    explained = env.get("/v1/routes/explain?address=spy@secret.test")
    assert explained["held"] and explained["relay"] == "external"


def test_names_expand_from_the_address_book_and_say_how(env: Env) -> None:
    ann = env.post("/v1/contacts", {"name": "Ann Lee", "emails": ["ann.lee@corp.test"]},
                   expect=201)
    env.put("/v1/groups/Ops", {"members": [{"contact": ann["id"]},
                                           {"address": "pager@x.test"}]})
    env.put("/v1/groups/Everyone", {"members": [{"group": "Ops"}, {"address": "all@x.test"}]})
    env.put("/v1/aliases/boss", {"targets": ["Jane Roe <jane@x.test>"]})

    accepted = env.submit(to="Everyone; boss", cc="pager@x.test")
    message = env.wait_status(accepted["id"], FINAL)
    assert message["status"] == "sent"
    assert [(r["address"], r["kind"], r["provenance"]) for r in message["recipients"]] == [
        ("ann.lee@corp.test", "to", "group:Everyone > group:Ops > contact:Ann Lee"),
        ("pager@x.test", "to", "group:Everyone > group:Ops"),
        ("all@x.test", "to", "group:Everyone"),
        ("jane@x.test", "to", "alias:boss")]
    (outside,) = env.received(env.external, accepted["message_id"])
    parsed = email.message_from_bytes(outside.data, policy=policy.default)
    assert "Jane Roe <jane@x.test>" in str(parsed["To"])

    with env.outbox.client() as client:
        unknown = client.post("/v1/messages", json={"from": "a@x.test", "to": ["nobody"],
                                                    "text": "x"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "to[0]"


def test_a_group_and_an_alias_named_with_a_slash_are_saved_and_deleted(env: Env) -> None:
    """Names may hold '/' (core.contacts.check_name); in the path it split the name, so
    such a group could be made (UI, CLI) and never changed or deleted over the API."""
    env.put("/v1/groups/Sales%2FEMEA", {"members": [{"address": "emea@x.test"}]})
    env.put("/v1/aliases/team%2Fops", {"targets": ["ops@x.test"]})
    assert "Sales/EMEA" in [g["name"] for g in env.get("/v1/groups")]
    with env.outbox.client() as client:
        deleted = [client.delete("/v1/groups/Sales%2FEMEA").status_code,
                   client.delete("/v1/aliases/team%2Fops").status_code]
    assert deleted == [204, 204]
    assert "Sales/EMEA" not in [g["name"] for g in env.get("/v1/groups")]
    assert "team/ops" not in [a["name"] for a in env.get("/v1/aliases")]


def test_an_import_sent_without_a_content_type_is_a_file_not_json(env: Env) -> None:
    """Its body is not scanned as JSON: a field of brackets nested past
    limits.max_json_depth is text like any other."""
    report = env.post("/v1/contacts/import?format=csv&dry_run=true",
                      content=b"Name,Email\n" + b"[" * 100 + b",bracket@x.test\n")
    assert report["added"] == 1


def test_autocomplete_ranks_what_was_used_and_imports_report(env: Env) -> None:
    report = env.post("/v1/contacts/import?format=csv",
                      content=b"Name,Email\nZoe Quinn,zoe.q@x.test\nZoe Quest,zoe.z@x.test\n"
                              b"Zoe Quinn,ZOE.Q@x.test\n")
    assert (report["added"], report["merged"]) == (2, 1)
    assert report["notes"] == ["line 4: same person as line 2 (a shared address); merged"]

    before = env.get("/v1/contacts/suggest?q=zoe%20q")["suggestions"]
    assert [s["address"] for s in before] == ["zoe.z@x.test", "zoe.q@x.test"]
    env.submit(to="Zoe Quinn")
    env.submit(to="zoe.q@x.test")

    def ranked() -> list[Any] | None:
        found = env.get("/v1/contacts/suggest?q=ZOE")["suggestions"]
        return found if found[0]["use_count"] == 2 else None

    after = wait_until(ranked, timeout=10, message="usage to be counted")
    assert [s["formatted"] for s in after] == ["Zoe Quinn <zoe.q@x.test>",
                                               "Zoe Quest <zoe.z@x.test>"]
    with env.outbox.client(READ_ONLY_KEY) as viewer:
        assert viewer.get("/v1/contacts/suggest", params={"q": "zoe"}).status_code == 200
        refused = viewer.post("/v1/contacts", json={"name": "X", "emails": ["x@x.test"]})
    assert refused.status_code == 403
    assert "'contacts' scope" in refused.json()["error"]["message"]
