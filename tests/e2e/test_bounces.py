"""Bounces end to end, on SQLite and PostgreSQL: a real `outbox serve`, a real aiosmtpd
relay, and the test's own MTA that sends a DSN to the message's VERP return path
(through the bounce listener) or drops it into a real Dovecot mailbox (IMAP intake).
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dovecot import Dovecot, running_dovecot
from tests.processes import OutboxProcess, free_port, wait_until
from tests.smtpd import ScriptedServer

BOUNCE_DOMAIN = "bounces.example.test"
ADMIN_KEY = "ob_test_admin_key_for_bounces_0001"
RECIPIENTS = ["ann@example.test", "bob@example.test", "carl@example.test"]


@pytest.fixture
def relay() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()


def keys() -> dict[str, Any]:
    from tests.processes import API_KEY
    return {"api_keys": [{"name": "app", "key": API_KEY, "scopes": ["send", "read"]},
                         {"name": "ops", "key": ADMIN_KEY, "scopes": ["admin"]}]}


def dsn(return_path: str, recipient: str, message_id: str) -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes one."""
    return f"""\
From: MAILER-DAEMON@mx.example.test (Mail Delivery System)
To: {return_path}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B0UND"

--B0UND
Content-Type: text/plain

<{recipient}>: host mx.example.test said: 550 5.1.1 <{recipient}>: Recipient
    address rejected: User unknown in local recipient table

--B0UND
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.test

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User
    unknown in local recipient table

--B0UND
Content-Type: text/rfc822-headers

From: shop@example.test
To: {recipient}
Message-ID: {message_id}

--B0UND--
""".replace("\n", "\r\n").encode()


def submit(outbox: OutboxProcess, to: list[str]) -> Any:
    with outbox.client() as client:
        return client.post("/v1/messages", json={"from": "shop@example.test", "to": to,
                                                 "subject": "Order", "text": "hi"})


def get(outbox: OutboxProcess, id: str) -> dict[str, Any]:
    with outbox.client() as client:
        return dict(client.get(f"/v1/messages/{id}").json())


def send_and_wait(outbox: OutboxProcess, relay: ScriptedServer) -> tuple[dict[str, Any], str]:
    """Three recipients, all sent; returns the message and the envelope sender used."""
    accepted = submit(outbox, RECIPIENTS)
    assert accepted.status_code == 202, accepted.text
    id = accepted.json()["id"]
    message = wait_until(lambda: (m := get(outbox, id))["status"] == "sent" and m,
                         message="the message to be sent")
    (received,) = [m for m in relay.messages if m.message_id == message["message_id"]]
    assert sorted(received.rcpt_tos) == RECIPIENTS
    return message, received.mail_from


def check_bounced(outbox: OutboxProcess, message: dict[str, Any]) -> None:
    """Bob bounced with the DSN's status and the catalogue's guidance, is suppressed, and
    a new message to him is refused; Ann and Carl stay sent."""
    def bounced() -> dict[str, Any] | None:
        found = get(outbox, message["id"])
        by_address = {r["address"]: r for r in found["recipients"]}
        return found if by_address["bob@example.test"]["status"] == "bounced" else None

    found = wait_until(bounced, timeout=30, message="bob to show bounced")
    by_address = {r["address"]: r for r in found["recipients"]}
    bob = by_address["bob@example.test"]
    assert (bob["reply_code"], bob["enhanced_code"]) == (550, "5.1.1")
    assert "User unknown in local recipient table" in bob["reply"]
    assert bob["guidance_detail"]["key"] == "smtp.5.1.1"
    assert "does not exist" in bob["guidance"] or "no mailbox" in bob["guidance"].lower()
    assert [by_address[a]["status"] for a in ("ann@example.test", "carl@example.test")] \
        == ["sent", "sent"]
    assert found["status"] == "sent"
    events = [e for e in found["events"] if e["type"] == "bounced"]
    assert len(events) == 1 and events[0]["recipient"] == "bob@example.test"
    assert events[0]["enhanced_code"] == "5.1.1" and events[0]["guidance"]

    with outbox.client(ADMIN_KEY) as client:
        listed = client.get("/v1/suppressions").json()["suppressions"]
    assert [(s["address"], s["reason"], s["source_message"]) for s in listed] == [
        ("bob@example.test", "hard_bounce", message["id"])]

    refused = submit(outbox, ["ann@example.test", "Bob <BOB@example.test>"])
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["field"]) == ("suppressed", "to[1]")
    assert "bob@example.test" in error["message"].lower()

    status = outbox.cli("status", message["id"])
    assert status.returncode == 0, status.stderr
    assert "bounced" in status.stdout
    listing = outbox.cli("suppress", "ls")
    assert listing.returncode == 0 and "bob@example.test\thard_bounce" in listing.stdout


def test_a_dsn_to_the_bounce_listener_bounces_one_of_three_and_suppresses_it(
        start_outbox: Any, relay: ScriptedServer) -> None:
    bounce_port = free_port()
    outbox = start_outbox([{"name": "default", "host": "127.0.0.1", "port": relay.port,
                            "security": "none"}], auth=keys(),
                          bounces={"domain": BOUNCE_DOMAIN, "bind": f"127.0.0.1:{bounce_port}"})
    message, return_path = send_and_wait(outbox, relay)
    assert return_path.startswith("bounces+") and return_path.endswith("@" + BOUNCE_DOMAIN)
    assert message["id"] in return_path

    # The remote MTA accepted, then bounced asynchronously: its DSN goes to the return path.
    with smtplib.SMTP("127.0.0.1", bounce_port, timeout=10) as mta:
        mta.ehlo("mx.example.test")
        code, _ = mta.mail("")
        assert code == 250
        assert mta.rcpt("postmaster@" + BOUNCE_DOMAIN.replace("bounces.", ""))[0] == 550
        assert mta.rcpt(return_path)[0] == 250
        code, said = mta.data(dsn(return_path, "bob@example.test", message["message_id"]))
        assert code == 250, said
    check_bounced(outbox, message)


def test_a_forged_return_path_changes_nothing(start_outbox: Any, relay: ScriptedServer) -> None:
    bounce_port = free_port()
    outbox = start_outbox([{"name": "default", "host": "127.0.0.1", "port": relay.port,
                            "security": "none"}], auth=keys(),
                          bounces={"domain": BOUNCE_DOMAIN, "bind": f"127.0.0.1:{bounce_port}"})
    message, return_path = send_and_wait(outbox, relay)
    local, _, domain = return_path.partition("@")
    tail = "0000" if not local.endswith("0000") else "1111"
    forged = f"{local[:-4]}{tail}@{domain}"  # the mac no longer holds
    with smtplib.SMTP("127.0.0.1", bounce_port, timeout=10) as mta:
        mta.sendmail("", [forged], dsn(forged, "bob@example.test", message["message_id"]))
    time.sleep(0.5)
    assert all(r["status"] == "sent" for r in get(outbox, message["id"])["recipients"])
    assert submit(outbox, ["bob@example.test"]).status_code == 202


def test_a_dsn_in_the_imap_mailbox_is_processed_once_and_flagged(
        start_outbox: Any, relay: ScriptedServer) -> None:
    with running_dovecot() as dovecot:
        outbox = start_outbox(
            [{"name": "default", "host": "127.0.0.1", "port": relay.port, "security": "none"}],
            auth=keys(), bounces={"domain": BOUNCE_DOMAIN, "imap": imap_config(dovecot)})
        message, return_path = send_and_wait(outbox, relay)
        dovecot.deliver(dsn(return_path, "bob@example.test", message["message_id"]), "dsn")
        dovecot.deliver(b"From: alice@example.test\r\nSubject: Out of office\r\n"
                        b"Auto-Submitted: auto-replied\r\nTo: " + return_path.encode()
                        + b"\r\n\r\nAway until Monday.\r\n", "vacation")
        check_bounced(outbox, message)
        wait_until(lambda: flagged(dovecot) == 2, timeout=20,
                   message="both messages to be flagged processed")
        time.sleep(1.0)  # a few more polls: nothing is applied twice
        events = [e for e in get(outbox, message["id"])["events"] if e["type"] == "bounced"]
        assert len(events) == 1


def imap_config(dovecot: Dovecot) -> dict[str, Any]:
    return {"host": dovecot.host, "port": dovecot.port, "security": "none",
            "username": dovecot.user, "password": dovecot.password, "poll_interval": "200ms"}


def flagged(dovecot: Dovecot) -> int:
    """Messages in INBOX with the processed keyword (Dovecot keeps keywords in the
    Maildir file name's flags, and their names in dovecot-keywords)."""
    import imaplib

    imap = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=5)
    try:
        imap.login(dovecot.user, dovecot.password)
        imap.select("INBOX")
        _, data = imap.uid("SEARCH", "KEYWORD", "$OutboxProcessed", "SEEN")
        return len((data[0] or b"").split())
    finally:
        imap.logout()
