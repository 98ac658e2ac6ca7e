"""`POST /v1/messages/raw`: a message the client built, for the envelope recipients it
names, through a real `outbox serve` to a real aiosmtpd sink. It is read as SMTP
submission reads a message (Bcc dropped, the From header the sender, files checked),
and signed mail goes out as it came (openssl checks the signature after delivery)."""

from __future__ import annotations

import base64
import secrets
import socket
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import API_KEY
from tests.smime import smime_signed, verified
from tests.submission import Served, serve_submission

PDF = b"%PDF-1.4 a report"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_submission("sqlite", tmp_path_factory.mktemp("raw")) as served:
        yield served


def post(served: Served, data: bytes, rcpt_to: list[str], **more: Any) -> httpx.Response:
    headers = more.pop("headers", {})
    with served.outbox.client() as api:
        return api.post("/v1/messages/raw", headers=headers, json={
            "rcpt_to": rcpt_to, "data": base64.b64encode(data).decode(), **more})


def built(message_id: str, *, bcc: bool = False, filename: str = "report.pdf") -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "Shop <shop@example.test>", "ann@example.test", "Your report")
    message["Message-ID"] = message_id
    if bcc:
        message["Bcc"] = "audit@example.test"
    message.set_content("attached")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename=filename)
    return message.as_bytes(policy=SMTP)


def new_id() -> str:
    return f"<{secrets.token_hex(8)}@app.example.test>"


def test_a_built_message_goes_to_its_envelope_recipients_without_its_bcc(
        served: Served) -> None:
    message_id = new_id()
    response = post(served, built(message_id, bcc=True),
                    ["ann@example.test", "audit@example.test"], metadata={"order": 7})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["message_id"] == message_id
    delivered = served.delivered(message_id)
    assert delivered["Bcc"] is None and delivered["Subject"] == "Your report"
    assert [p.get_payload(decode=True) for p in delivered.walk()
            if p.get_filename() == "report.pdf"] == [PDF]
    (sent,) = [m for m in served.sink.messages if m.message_id == message_id]
    assert sorted(sent.rcpt_tos) == ["ann@example.test", "audit@example.test"]
    with served.outbox.client() as api:
        stored = api.get(f"/v1/messages/{accepted['id']}").json()
    assert stored["metadata"]["order"] == 7


def test_signed_mail_goes_out_as_it_came(served: Served, tmp_path: Path) -> None:
    message_id = new_id()
    raw, certificate = smime_signed(
        message_id, b"Content-Type: text/plain\r\n\r\nSigned through the API.\r\n", tmp_path)
    response = post(served, raw, ["ann@example.test"])
    assert response.status_code == 202, response.text
    served.delivered(message_id)
    (found,) = [m for m in served.sink.messages if m.message_id == message_id]
    assert verified(found.data, certificate, tmp_path)


def test_a_file_saved_with_lf_line_ends_is_sent_with_crlf(served: Served) -> None:
    message_id = new_id()
    response = post(served, built(message_id).replace(b"\r\n", b"\n"), ["ann@example.test"])
    assert response.status_code == 202, response.text
    assert [p.get_payload(decode=True) for p in served.delivered(message_id).walk()
            if p.get_filename() == "report.pdf"] == [PDF]


def test_the_same_request_with_its_key_is_a_replay(served: Served) -> None:
    message_id, key = new_id(), secrets.token_hex(8)
    data = built(message_id)
    first = post(served, data, ["ann@example.test"], headers={"Idempotency-Key": key})
    again = post(served, data, ["ann@example.test"], headers={"Idempotency-Key": key})
    other = post(served, built(new_id()), ["ann@example.test"],
                 headers={"Idempotency-Key": key})
    assert first.status_code == 202 and again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(("data", "rcpt_to", "code", "field"), [
    (b"!not base64!", ["ann@example.test"], "invalid_input", "data"),
    (built("<b@app.example.test>", filename="tool.exe"), ["ann@example.test"],
     "attachment_blocked", None),
    (b"To: ann@example.test\r\nSubject: no sender\r\n\r\nhello\r\n", ["ann@example.test"],
     None, "from"),
    (built("<c@app.example.test>"), ["not an address"], "invalid_address", "rcpt_to[0]"),
])
def test_what_cannot_be_sent_is_refused_naming_why(
        served: Served, data: bytes, rcpt_to: list[str], code: str | None,
        field: str | None) -> None:
    with served.outbox.client() as api:
        response = api.post("/v1/messages/raw", json={"rcpt_to": rcpt_to, "data": (
            data.decode() if data.startswith(b"!") else base64.b64encode(data).decode())})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert code is None or error["code"] == code, error
    assert field is None or error["field"] == field, error
    assert "\n" not in error["message"]
    assert field != "from" or "no From header" in error["message"]
    assert field != "rcpt_to[0]" or error["message"].startswith("rcpt_to[0]: ")


def post_file(served: Served, data: bytes, query: str = "", **headers: str) -> httpx.Response:
    """The message itself as the body, as `curl --data-binary @mail.eml` sends it."""
    with served.outbox.client() as api:
        return api.post(f"/v1/messages/raw{query}", content=data,
                        headers={"Content-Type": "message/rfc822", **headers})


def test_the_message_itself_as_the_body_goes_to_the_rcpt_to_of_the_query(
        served: Served) -> None:
    message_id = new_id()
    response = post_file(served, built(message_id, bcc=True),
                         "?rcpt_to=ann@example.test&rcpt_to=audit@example.test")
    assert response.status_code == 202, response.text
    assert response.json()["message_id"] == message_id
    delivered = served.delivered(message_id)
    assert delivered["Bcc"] is None
    assert [p.get_payload(decode=True) for p in delivered.walk()
            if p.get_filename() == "report.pdf"] == [PDF]
    (sent,) = [m for m in served.sink.messages if m.message_id == message_id]
    assert sorted(sent.rcpt_tos) == ["ann@example.test", "audit@example.test"]


def test_without_rcpt_to_the_headers_name_the_recipients_and_bcc_is_not_sent(
        served: Served) -> None:
    """As `sendmail -t`: To, Cc and Bcc receive it, in either form of the request."""
    for send in (lambda data: post_file(served, data),
                 lambda data: post(served, data, [])):
        message_id = new_id()
        data = built(message_id, bcc=True).replace(
            b"To: ann@example.test\r\n", b"To: ann@example.test\r\nCc: cy@example.test\r\n")
        response = send(data)
        assert response.status_code == 202, response.text
        assert served.delivered(message_id)["Bcc"] is None
        (sent,) = [m for m in served.sink.messages if m.message_id == message_id]
        assert sorted(sent.rcpt_tos) == ["ann@example.test", "audit@example.test",
                                         "cy@example.test"]


def test_the_message_itself_with_its_key_is_a_replay_and_a_relay_is_checked(
        served: Served) -> None:
    message_id, key = new_id(), secrets.token_hex(8)
    data = built(message_id)
    first = post_file(served, data, "?rcpt_to=ann@example.test", **{"Idempotency-Key": key})
    again = post_file(served, data, "?rcpt_to=ann@example.test", **{"Idempotency-Key": key})
    assert first.status_code == 202 and again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    nosuch = post_file(served, built(new_id()), "?relay=nosuch")
    assert nosuch.status_code == 422, nosuch.text
    assert nosuch.json()["error"]["field"] == "relay"


def test_a_form_or_a_text_body_is_told_how_to_send_the_message(served: Served) -> None:
    with served.outbox.client() as api:
        form = api.post("/v1/messages/raw", files={"file": ("mail.eml", built(new_id()))})
        text = api.post("/v1/messages/raw", content=b"From: a@example.test\r\n\r\nhi\r\n",
                        headers={"Content-Type": "text/plain"})
    for response in (form, text):
        assert response.status_code == 415, response.text
        assert "message/rfc822" in response.json()["error"]["message"]
    assert "--data-binary @mail.eml" in form.json()["error"]["message"]


def test_a_message_cut_short_by_a_disconnect_is_not_queued(served: Served) -> None:
    """The client promises more bytes than it sends, then goes: the part that came is
    not a message to queue (it would read as one, cut short)."""
    subject = f"cut short {secrets.token_hex(4)}"
    data = built(new_id()).replace(b"Your report", subject.encode())
    url = httpx.URL(served.outbox.base_url)
    head = (f"POST /v1/messages/raw?rcpt_to=ann@example.test HTTP/1.1\r\n"
            f"Host: {url.host}\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: message/rfc822\r\nContent-Length: {len(data) + 500}\r\n\r\n")
    with socket.create_connection((url.host, url.port), timeout=10) as client:
        client.sendall(head.encode() + data)
    with served.outbox.client() as api:
        deadline = time.monotonic() + 3  # the old code queued it within milliseconds
        while time.monotonic() < deadline:
            listed = api.get("/v1/messages", params={"q": subject}).json()["messages"]
            assert listed == [], listed
            time.sleep(0.1)
