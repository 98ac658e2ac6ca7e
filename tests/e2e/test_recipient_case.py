"""One copy per mailbox whatever the case of its spelling (the seed's S3, dedupe).

The address book merges ann@example.test and ANN@example.test as one person, but a
message to "Ops; ANN@example.test" (Ops holds ann and bob) went to three RCPTs, and
`to: ann@…, cc: ANN@EXAMPLE.TEST` to two: the same person got the mail twice. What the
real relay is given is what is checked here."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Starter
from tests.processes import API_KEY, wait_until
from tests.smtpd import ScriptedServer

KEYS = {"api_keys": [{"name": "app", "key": API_KEY, "scopes": ["send", "read", "contacts"]}]}


def _delivered(start_outbox: Starter, sink: ScriptedServer,
               **fields: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    relay = {"name": "default", "host": "127.0.0.1", "port": sink.port, "security": "none"}
    outbox = start_outbox([relay], auth=KEYS)
    with outbox.client() as client:
        ann = client.post("/v1/contacts", json={"name": "Ann", "emails": ["ann@example.test"]})
        assert ann.status_code == 201, ann.text
        group = client.put("/v1/groups/Ops", json={"members": [
            {"contact": ann.json()["id"]}, {"address": "bob@example.test"}]})
        assert group.status_code == 200, group.text
        accepted = client.post("/v1/messages", json={"from": "shop@example.test",
                                                     "text": "hi", **fields})
        assert accepted.status_code == 202, accepted.text
        id, message_id = accepted.json()["id"], accepted.json()["message_id"]
        message = wait_until(lambda: (body := client.get(f"/v1/messages/{id}").json())
                             ["status"] == "sent" and body, timeout=30, message="sent")
    (received,) = [m for m in sink.messages if m.message_id == message_id]
    return message, received.rcpt_tos


def test_a_group_member_and_the_same_address_in_capitals_get_one_copy(
        start_outbox: Starter) -> None:
    with ScriptedServer() as sink:
        message, rcpts = _delivered(start_outbox, sink, to="Ops; ANN@example.test")
    assert rcpts == ("ann@example.test", "bob@example.test")
    assert [(r["address"], r["provenance"]) for r in message["recipients"]] == [
        ("ann@example.test", "group:Ops > contact:Ann"), ("bob@example.test", "group:Ops")]


def test_to_and_cc_differing_in_case_are_one_recipient_the_first_spelling_wins(
        start_outbox: Starter) -> None:
    with ScriptedServer() as sink:
        message, rcpts = _delivered(start_outbox, sink, to="Ann@example.test",
                                    cc="ANN@EXAMPLE.TEST", bcc=["ann@Example.Test"])
    assert rcpts == ("Ann@example.test",)
    assert [(r["address"], r["kind"]) for r in message["recipients"]] == [
        ("Ann@example.test", "to")]
