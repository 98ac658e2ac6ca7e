"""Event webhooks against real `outbox serve` processes, a real SMTP server and a real
HTTP receiver on loopback, on SQLite and PostgreSQL, at the production retry schedule
(`[webhooks]` defaults: 1 s doubling). The receiver's address is allowed explicitly
(`allowed_networks = ["127.0.0.1/32"]`); the rest of loopback stays refused, as all of
it is by default (in-process: tests/integration/test_webhooks.py, test_cli_webhooks.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outbox.core import signing
from tests.e2e.conftest import Starter
from tests.processes import API_KEY, OutboxProcess, free_port, wait_until
from tests.smtpd import ScriptedServer
from tests.webhook import Received, WebhookReceiver

ADMIN_KEY = "ob_admin_webhooks_7Yt3Qp"
SECRET = "whsec_e2e_secret_0123456789abcdef"


@pytest.fixture
def sink() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()


def sections(tmp_path: Path) -> dict[str, Any]:
    return {"auth": {"api_keys": [{"name": "app", "key": API_KEY, "scopes": ["send", "read"]},
                                  {"name": "ops", "key": ADMIN_KEY, "scopes": ["admin"]}]},
            "webhooks": {"allowed_networks": ["127.0.0.1/32"]},
            "secrets": {"key_file": str(tmp_path / "secret.key")}}


def start(start_outbox: Starter, sink: ScriptedServer, tmp_path: Path) -> OutboxProcess:
    relay = {"name": "default", "host": "127.0.0.1", "port": sink.port, "security": "none"}
    return start_outbox([relay], **sections(tmp_path))


def add_endpoint(outbox: OutboxProcess, url: str, **body: Any) -> dict[str, Any]:
    with outbox.client(ADMIN_KEY) as admin:
        response = admin.post("/v1/webhooks", json={"url": url, "events": ["queued", "sent"],
                                                    "secret": SECRET, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def submit(outbox: OutboxProcess, to: str, order: str) -> dict[str, Any]:
    with outbox.client() as client:
        response = client.post("/v1/messages", json={
            "from": "shop@example.test", "to": to, "subject": "Your order", "text": "hi",
            "metadata": {"order": order}})
    assert response.status_code == 202, response.text
    return dict(response.json())


def verified(request: Received) -> bool:
    return signing.verify_event(SECRET, request.headers["Outbox-Timestamp"],
                                request.headers["Outbox-Signature"], request.body, time.time())


def delivered_ids(receiver: WebhookReceiver) -> set[str]:
    return {r.json["id"] for r in receiver.requests() if r.status == 200}


def expected_events(messages: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(m["id"], kind) for m in messages for kind in ("queued", "sent")}


def wait_delivered(receiver: WebhookReceiver, count: int, timeout: float = 60) -> None:
    wait_until(lambda: len(delivered_ids(receiver)) >= count, timeout=timeout,
               message=f"{count} events answered 200")


def test_every_event_arrives_signed_and_a_retry_keeps_its_event_id(
        start_outbox: Starter, sink: ScriptedServer, tmp_path: Path) -> None:
    outbox = start(start_outbox, sink, tmp_path)
    check_refusals(outbox)
    with WebhookReceiver(script=[500, 500, 500]) as receiver:
        endpoint = add_endpoint(outbox, receiver.url)
        assert endpoint["secret"] == SECRET
        messages = [submit(outbox, "ann@example.test", "A-1"),
                    submit(outbox, "bob@example.test", "B-2")]
        wait_delivered(receiver, 4)
        requests = receiver.requests()

        assert [r.status for r in requests[:3]] == [500, 500, 500]
        assert all(verified(r) for r in requests)
        assert all(r.headers["Outbox-Event-Id"] == r.json["id"] for r in requests)
        ok_bodies = {r.json["id"]: r.body for r in requests if r.status == 200}
        for refused in requests[:3]:  # each refused event came again: same id, same body
            assert ok_bodies[refused.json["id"]] == refused.body
        events = [r.json for r in requests if r.status == 200]
        assert {(e["message"]["id"], e["type"]) for e in events} == expected_events(messages)
        by_message = {m["id"]: m for m in messages}
        for event in events:
            message = by_message[event["message"]["id"]]
            assert event["message"]["message_id"] == message["message_id"]
            assert event["message"]["metadata"] == {"order": "A-1" if
                                                    event["message"]["id"] == messages[0]["id"]
                                                    else "B-2"}
        sent = [e for e in events if e["type"] == "sent"]
        assert {e["recipient"] for e in sent} == {"ann@example.test", "bob@example.test"}
        assert all(e["reply"]["code"] == 250 and e["guidance"]["key"] for e in sent)

        check_the_log_and_redeliver(outbox, endpoint["id"], receiver)


def check_refusals(outbox: OutboxProcess) -> None:
    """The server allows 127.0.0.1 only: other loopback and private addresses are refused."""
    with outbox.client(ADMIN_KEY) as admin, outbox.client() as sender:
        private = admin.post("/v1/webhooks", json={"url": "http://10.0.0.7/hook",
                                                   "events": ["sent"]})
        loopback = admin.post("/v1/webhooks", json={"url": "http://127.0.0.2:8080/hook",
                                                    "events": ["sent"]})
        unknown = admin.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                                   "events": ["sent", "opened"]})
        not_admin = sender.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                                      "events": ["sent"]})
        listed = admin.get("/v1/webhooks").json()["endpoints"]
    assert private.status_code == 422
    assert private.json()["error"]["field"] == "url"
    assert "10.0.0.7 is a private address" in private.json()["error"]["message"]
    assert loopback.status_code == 422
    assert "127.0.0.2 is a loopback address" in loopback.json()["error"]["message"]
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (422, "events[1]")
    assert not_admin.status_code == 403
    assert listed == []


def check_the_log_and_redeliver(outbox: OutboxProcess, endpoint_id: str,
                                receiver: WebhookReceiver) -> None:
    with outbox.client(ADMIN_KEY) as admin:
        def recorded() -> list[dict[str, Any]] | None:
            log = admin.get(f"/v1/webhooks/{endpoint_id}/deliveries").json()["deliveries"]
            return log if all(d["status"] != "pending" for d in log) else None

        # The receiver has its 200 before Outbox records it: CI on a loaded 2-core machine
        # once read the last delivery as still pending. Every one must get there.
        log = wait_until(recorded, timeout=30, message="the deliveries recorded")
        listed = admin.get("/v1/webhooks").json()["endpoints"]
    assert [d["status"] for d in log] == ["delivered"] * 4
    assert sum(d["attempts"] for d in log) == 7  # 4 events, 3 refused tries
    assert SECRET not in str(listed) and listed[0]["id"] == endpoint_id

    event_id = log[-1]["event_id"]
    with outbox.client(ADMIN_KEY) as admin:
        again = admin.post(f"/v1/webhooks/{endpoint_id}/redeliver", json={"event_id": event_id})
    assert again.status_code == 202 and again.json() == {"deliveries": 1}
    wait_until(lambda: sum(r.json["id"] == event_id for r in receiver.requests()
                           if r.status == 200) == 2, message="the redelivered event")
    first, second = [r for r in receiver.requests() if r.json["id"] == event_id][-2:]
    assert first.body == second.body and verified(second)


def test_redeliver_refuses_an_event_the_endpoint_does_not_subscribe_to(
        start_outbox: Starter, sink: ScriptedServer, tmp_path: Path) -> None:
    """An endpoint of `sent` is not sent the message's other events on redeliver: not
    `queued` (it left it out), nor `claimed` or `attempt` (internal: no endpoint can
    subscribe to them). 422 in the usual shape, naming the type and the endpoint's."""
    outbox = start(start_outbox, sink, tmp_path)
    with WebhookReceiver() as receiver:
        endpoint = add_endpoint(outbox, receiver.url, events=["sent"])
        submit(outbox, "ann@example.test", "A-1")
        wait_delivered(receiver, 1)
        (sent,) = receiver.requests()
        earlier = range(1, int(sent.json["id"].removeprefix("evt_")))  # the same message's
        with outbox.client(ADMIN_KEY) as admin:
            answers = [admin.post(f"/v1/webhooks/{endpoint['id']}/redeliver",
                                  json={"event_id": f"evt_{n}"}) for n in earlier]
        assert [a.status_code for a in answers] == [422] * len(answers)
        errors = [a.json()["error"] for a in answers]
        assert all(e["field"] == "event_id" for e in errors)
        refused = {e["message"].split("'")[1] for e in errors}
        assert {"queued", "claimed", "attempt"} <= refused and "sent" not in refused
        assert errors[0]["message"] == (
            f"endpoint {endpoint['id']} does not subscribe to 'queued' events (it "
            "subscribes to: sent), so evt_1 cannot be redelivered to it")
        assert len(receiver.requests()) == 1


def test_an_endpoint_url_is_refused_in_words(
        start_outbox: Starter, sink: ScriptedServer, tmp_path: Path) -> None:
    """A stranger pass got the URL pattern itself (400 characters of regular expression)
    as the message."""
    outbox = start(start_outbox, sink, tmp_path)
    with outbox.client(ADMIN_KEY) as admin:
        ftp, ipv6 = (admin.post("/v1/webhooks", json={"url": url, "events": ["sent"]})
                     for url in ("ftp://hooks.example.test/", "http://[::1]:9/hook"))
    assert ftp.status_code == 422 and ftp.json()["error"]["field"] == "url"
    assert ftp.json()["error"]["message"].startswith("url: must be http:// or https://")
    assert "[Hh]" not in ftp.json()["error"]["message"]
    assert ipv6.status_code == 422
    assert ipv6.json()["error"]["message"].endswith("(for an IPv6 address, use a host name)")


def test_undelivered_events_are_delivered_after_kill_9(
        start_outbox: Starter, sink: ScriptedServer, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet: every try fails
    outbox = start(start_outbox, sink, tmp_path)
    endpoint = add_endpoint(outbox, f"http://127.0.0.1:{port}/hook", events=["queued"])
    messages = [submit(outbox, "ann@example.test", "A-1"),
                submit(outbox, "bob@example.test", "B-2")]

    def tried() -> bool:
        with outbox.client(ADMIN_KEY) as admin:
            log = admin.get(f"/v1/webhooks/{endpoint['id']}/deliveries").json()["deliveries"]
        return len(log) == 2 and all(d["attempts"] >= 1 and d["status"] == "pending"
                                     for d in log)

    wait_until(tried, message="every event tried and refused")
    outbox.kill()

    with WebhookReceiver(port=port) as receiver:
        start_outbox([], config=outbox.config)
        wait_delivered(receiver, 2)
        events = {(r.json["message"]["id"], r.json["type"]) for r in receiver.requests()}
        assert events == {(m["id"], "queued") for m in messages}
        assert all(verified(r) for r in receiver.requests())
