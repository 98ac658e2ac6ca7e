"""A retry of mail the relay probably has already asks first (the seed's duplicates).

A tester's relay hung up after the final "." of every try: three uncertain tries, the
relay held three copies, the message ended `failed`, and `outbox queue retry` sent copy
number four without a word. Now the API answers 409 `confirmation_required` and the CLI
exits non-zero, both naming the count, until the caller confirms."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Starter
from tests.processes import OutboxProcess, wait_until
from tests.smtpd import ScriptedServer, drop

BODY = {"from": "shop@example.test", "to": "ann@example.test", "subject": "Order 42",
        "text": "Your order has shipped."}
# Three tries, as in the report (the default of 20 would mean 20 uncertain copies first).
RETRY = {"max_attempts": 3}


def _failed_after_three_uncertain_tries(
        start_outbox: Starter, server: ScriptedServer) -> tuple[OutboxProcess, dict[str, Any]]:
    relay = {"name": "default", "host": "127.0.0.1", "port": server.port, "security": "none"}
    outbox = start_outbox([relay], retry=RETRY)
    with outbox.client() as client:
        accepted = client.post("/v1/messages", json=BODY).json()
        message = wait_until(lambda: (body := client.get(f"/v1/messages/{accepted['id']}").json())
                             ["status"] == "failed" and body, timeout=60,
                             message="the message to fail after three uncertain tries")
    assert [e["type"] for e in message["events"]].count("uncertain") == 3
    assert server.message_ids[accepted["message_id"]] == 3
    return outbox, accepted


def test_api_retry_of_uncertain_mail_needs_confirmation(start_outbox: Starter) -> None:
    with ScriptedServer(script=[drop("DATA")]) as server:
        outbox, accepted = _failed_after_three_uncertain_tries(start_outbox, server)
        id = accepted["id"]
        with outbox.client() as client:
            for body in ({}, None, {"confirm": False}):
                refused = (client.post(f"/v1/messages/{id}/retry") if body is None
                           else client.post(f"/v1/messages/{id}/retry", json=body))
                assert refused.status_code == 409, refused.text
                error = refused.json()["error"]
                assert error["code"] == "confirmation_required"
                assert "probably reached the relay 3 time(s) already" in error["message"]
                assert "confirm" in error["message"] + str(error.get("hint", ""))
            assert client.get(f"/v1/messages/{id}").json()["status"] == "failed"
            server.set_script()  # the relay answers now: the confirmed retry is sent
            confirmed = client.post(f"/v1/messages/{id}/retry", json={"confirm": True})
            assert confirmed.status_code == 200, confirmed.text
            wait_until(lambda: client.get(f"/v1/messages/{id}").json()["status"] == "sent",
                       timeout=30, message="the confirmed retry to be sent")
        assert server.message_ids[accepted["message_id"]] == 4


def test_cli_retry_of_uncertain_mail_needs_yes(start_outbox: Starter) -> None:
    with ScriptedServer(script=[drop("DATA")]) as server:
        outbox, accepted = _failed_after_three_uncertain_tries(start_outbox, server)
        id = accepted["id"]
        refused = outbox.cli("queue", "retry", id)
        assert refused.returncode != 0
        assert "Traceback" not in refused.stderr
        (line,) = refused.stderr.strip().splitlines()
        assert "probably reached the relay 3 time(s) already" in line
        assert "--yes" in line
        with outbox.client() as client:
            assert client.get(f"/v1/messages/{id}").json()["status"] == "failed"
        server.set_script()
        confirmed = outbox.cli("queue", "retry", id, "--yes")
        assert confirmed.returncode == 0, confirmed.stderr
        assert confirmed.stdout.split()[:2] == [id, "queued"]
        with outbox.client() as client:
            wait_until(lambda: client.get(f"/v1/messages/{id}").json()["status"] == "sent",
                       timeout=30, message="the confirmed retry to be sent")
        assert server.message_ids[accepted["message_id"]] == 4


def test_retry_of_ordinary_deferred_mail_needs_no_confirmation(start_outbox: Starter) -> None:
    with ScriptedServer(script=[drop("MAIL")]) as server:
        relay = {"name": "default", "host": "127.0.0.1", "port": server.port, "security": "none"}
        outbox = start_outbox([relay], retry={"max_attempts": 3})
        with outbox.client() as client:
            id = client.post("/v1/messages", json=BODY).json()["id"]
            wait_until(lambda: client.get(f"/v1/messages/{id}").json()["status"]
                       in {"deferred", "failed"}, timeout=30, message="a try to end")
            server.set_script()
            wait_until(lambda: client.post(f"/v1/messages/{id}/retry").status_code == 200
                       or client.get(f"/v1/messages/{id}").json()["status"] == "sent",
                       timeout=30, message="the retry to be taken")
            wait_until(lambda: client.get(f"/v1/messages/{id}").json()["status"] == "sent",
                       timeout=30, message="the message to be sent")
