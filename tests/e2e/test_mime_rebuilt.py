"""Mail Outbox rebuilds still works in its recipients' clients (a stranger pass found
four ways it did not): an attached message goes 7bit as it is, a calendar invite
keeps its `method` and goes as the body's last alternative, an inline image in
multipart/related keeps its Content-ID, and signed mail goes out as it came, its
signature good (openssl checks it). A real `outbox serve` (API and SMTP
submission through STARTTLS and AUTH) delivers to a real aiosmtpd sink. One backend:
none of this touches the store's dialect."""

from __future__ import annotations

import base64
import email
import secrets
from collections.abc import Iterator
from email.message import EmailMessage, Message
from email.policy import SMTP
from pathlib import Path
from typing import cast

import pytest

from tests.smime import smime_signed, verified
from tests.submission import (
    Served,
    serve_submission,
)

INNER = (b"From: Bob <bob@example.test>\r\nTo: ann@example.test\r\nSubject: original\r\n"
         b"Message-ID: <inner@example.test>\r\n\r\nthe original text\r\n.a dot line\r\n")
INVITE = b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_submission("sqlite", tmp_path_factory.mktemp("rebuilt")) as served:
        yield served


def mail(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "Shop <shop@example.test>", "ann@example.test", subject)
    message["Message-ID"] = f"<{secrets.token_hex(8)}@client.example.test>"
    return message


def only(message: EmailMessage, content_type: str) -> Message:
    (found,) = [p for p in message.walk() if p.get_content_type() == content_type]
    return found


def alternatives(message: EmailMessage) -> list[str]:
    (found,) = [p for p in message.walk() if p.get_content_type() == "multipart/alternative"]
    return [part.get_content_type() for part in cast(list[Message], found.get_payload())]


def test_a_forwarded_message_over_smtp_goes_7bit_as_it_is(served: Served) -> None:
    message = mail("Fwd: original")
    message.set_content("see the original below")
    message.add_attachment(email.message_from_bytes(INNER, policy=SMTP))
    code, _ = served.send(message)
    assert code == 250
    part = only(served.delivered(str(message["Message-ID"])), "message/rfc822")
    assert part["Content-Transfer-Encoding"] == "7bit"
    inner = part.get_payload(0)
    assert isinstance(inner, Message) and inner["Subject"] == "original"
    assert inner.get_payload() == "the original text\r\n.a dot line\r\n"


def test_api_attachments_keep_their_type_parameters_and_messages_go_7bit(
        served: Served) -> None:
    message_id = f"<{secrets.token_hex(8)}@api.example.test>"
    with served.outbox.client() as api:
        response = api.post("/v1/messages", json={
            "from": "shop@example.test", "to": "ann@example.test", "subject": "Invite",
            "text": "join us", "headers": {"Message-ID": message_id},
            "attachments": [
                {"filename": "fwd.eml", "content_type": "message/rfc822",
                 "content_base64": base64.b64encode(INNER).decode()},
                {"filename": "invite.ics",
                 "content_type": "text/calendar; method=REQUEST; charset=utf-8",
                 "content_base64": base64.b64encode(INVITE).decode()}]})
    assert response.status_code == 202, response.text
    delivered = served.delivered(message_id)
    assert only(delivered, "message/rfc822")["Content-Transfer-Encoding"] == "7bit"
    invite = only(delivered, "text/calendar")
    assert (invite.get_param("method"), invite.get_param("charset"),
            invite["Content-Disposition"]) == ("REQUEST", "utf-8", None)
    assert invite.get_payload(decode=True) == INVITE
    assert alternatives(delivered) == ["text/plain", "text/calendar"]


@pytest.mark.parametrize("content_type", ["text/calendar; method=REQUEST\r\nBcc: x@example.test",
                                          "text/calendar; method"])
def test_api_refuses_a_malformed_content_type_in_one_line(served: Served,
                                                          content_type: str) -> None:
    with served.outbox.client() as api:
        response = api.post("/v1/messages", json={
            "from": "shop@example.test", "to": "ann@example.test", "text": "x",
            "attachments": [{"filename": "invite.ics", "content_type": content_type,
                             "content_base64": base64.b64encode(INVITE).decode()}]})
    assert response.status_code == 422
    body = response.json()
    assert "attachments[0].content_type" in response.text and "\n" not in str(body)


def test_an_image_the_html_shows_from_multipart_related_keeps_its_content_id(
        served: Served) -> None:
    message = mail("Logo")
    message.set_content("our logo")
    message.add_alternative('<p><img src="cid:logo@x"></p>', subtype="html")
    html_part = cast(EmailMessage, message.get_payload()[1])  # type: ignore[index]
    html_part.add_related(b"\x89PNG\r\n\x1a\nlogo", maintype="image", subtype="png",
                          cid="<logo@x>", filename="logo.png")  # Disposition: attachment
    code, _ = served.send(message)
    assert code == 250
    delivered = served.delivered(str(message["Message-ID"]))
    related = only(delivered, "multipart/related")
    image = only(related, "image/png")  # type: ignore[arg-type]
    assert image["Content-ID"] == "<logo@x>"
    assert image.get_content_disposition() == "inline"


def test_signed_mail_goes_out_as_it_came_and_its_signature_holds(
        served: Served, tmp_path: Path) -> None:
    message_id = f"<{secrets.token_hex(8)}@client.example.test>"
    part = (b"Content-Type: text/plain; charset=us-ascii\r\n\r\nPay invoice 42.   \r\n"
            b".a line that starts with a dot\r\n")
    raw, certificate = smime_signed(message_id, part, tmp_path)
    code, reply = served.send(raw)
    assert code == 250, reply
    served.delivered(message_id)
    (found,) = [m for m in served.sink.messages if m.message_id == message_id]
    assert verified(found.data, certificate, tmp_path)
    # The check can fail: one byte changed in the signed text, and openssl says so.
    assert not verified(found.data.replace(b"invoice 42", b"invoice 43"), certificate, tmp_path)


def test_a_blocked_file_inside_signed_mail_is_refused(served: Served, tmp_path: Path) -> None:
    message_id = f"<{secrets.token_hex(8)}@client.example.test>"
    inner = EmailMessage()
    inner.set_content("the tool")
    inner.add_attachment(b"MZ\x90\x00", maintype="application", subtype="octet-stream",
                         filename="tool.exe")
    raw, _ = smime_signed(message_id, inner.as_bytes(policy=SMTP), tmp_path)
    code, reply = served.send(raw)
    assert code == 550 and reply.startswith("5.7.1") and "tool.exe" in reply
    assert message_id not in served.sink.message_ids



def test_a_calendar_alternative_over_smtp_stays_an_alternative(served: Served) -> None:
    message = mail("Meeting")
    message.set_content("You are invited")
    message.add_alternative("<p>You are invited</p>", subtype="html")
    message.add_alternative(INVITE.decode(), subtype="calendar", params={"method": "REQUEST"})
    code, _ = served.send(message)
    assert code == 250
    delivered = served.delivered(str(message["Message-ID"]))
    invite = only(delivered, "text/calendar")
    assert invite.get_param("method") == "REQUEST" and invite["Content-Disposition"] is None
    assert invite.get_payload(decode=True) == INVITE
    assert alternatives(delivered) == ["text/plain", "text/html", "text/calendar"]


@pytest.mark.parametrize(("inner", "sent_as"), [
    (INNER, "message/rfc822"),
    (b"Subject: caf\xc3\xa9\n\nunix line ends, 8-bit\n", "application/octet-stream")])
def test_an_uploaded_message_is_read_through_to_choose_how_it_goes(
        served: Served, inner: bytes, sent_as: str) -> None:
    message_id = f"<{secrets.token_hex(8)}@api.example.test>"
    with served.outbox.client() as api:
        upload = api.post("/v1/uploads", content=inner)
        assert upload.status_code in (200, 201), upload.text
        response = api.post("/v1/messages", json={
            "from": "shop@example.test", "to": "ann@example.test", "text": "fwd",
            "headers": {"Message-ID": message_id},
            "attachments": [{"filename": "fwd.eml", "content_type": "message/rfc822",
                             "upload_id": upload.json()["upload_id"]}]})
    assert response.status_code == 202, response.text
    part = only(served.delivered(message_id), sent_as)
    assert part.get_filename() == "fwd.eml"
    if sent_as == "message/rfc822":
        assert part["Content-Transfer-Encoding"] == "7bit"
    else:
        assert part.get_payload(decode=True) == inner


def test_large_signed_mail_goes_out_as_it_came(served: Served, tmp_path: Path) -> None:
    """Past 1 MB DATA is spooled and large base64 files are split out as they are read
    (submission/spool.py); signed mail is read whole instead, and goes out byte for
    byte."""
    message_id = f"<{secrets.token_hex(8)}@client.example.test>"
    inner = EmailMessage()
    inner.set_content("the report")
    inner.add_attachment(secrets.token_bytes(1_500_000), maintype="application",
                         subtype="pdf", filename="report.pdf")
    raw, certificate = smime_signed(message_id, inner.as_bytes(policy=SMTP), tmp_path)
    code, reply = served.send(raw)
    assert code == 250, reply
    served.delivered(message_id)
    (found,) = [m for m in served.sink.messages if m.message_id == message_id]
    assert verified(found.data, certificate, tmp_path)
    # Never split: its files would be stored, then forgotten when the parts did not match.
    assert "its parts did not split as read" not in served.outbox.log_path.read_text()
