"""SMTP submission (issue 13): real clients (smtplib, aiosmtplib, swaks) submit to a
real `outbox serve` through STARTTLS and AUTH with an API key; the message reaches
the sink once, with its Bcc recipients and no Bcc header. Refusals come at the
right step with their enhanced codes; connection limits at production defaults.
SQLite and PostgreSQL, one server per backend for the module."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import secrets
import smtplib
import socket
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from tests.processes import READ_ONLY_KEY, wait_until
from tests.submission import (
    ADMIN_KEY,
    PASSWORD,
    USER,
    Served,
    client_context,
    queued,
    raw_message,
    serve_submission,
)

VISIBLE, HIDDEN = "ann@example.test", "hidden@example.test"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_submission(request.param, tmp_path_factory.mktemp("submission")) as served:
        yield served


def assert_delivered_once_with_bcc(served: Served, reply: str, message_id: str) -> None:
    id, replied_message_id = queued(reply)
    assert replied_message_id == message_id
    assert served.final(id)["status"] == "sent"  # final: nothing more will be sent
    assert served.sink.message_ids[message_id] == 1
    (received,) = [m for m in served.sink.messages if m.message_id == message_id]
    assert set(received.rcpt_tos) == {VISIBLE, HIDDEN}
    head = received.data.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nbcc:" not in head and HIDDEN.encode() not in received.data


def test_smtplib_submits_through_starttls_and_auth(served: Served) -> None:
    raw, message_id = raw_message(to=VISIBLE)
    with served.smtp() as client:
        assert client.sock is not None and client.sock.version() is not None  # TLS on
        client.mail("shop@example.test")
        client.rcpt(VISIBLE)
        client.rcpt(HIDDEN)
        code, reply = client.data(raw)
    assert code == 250
    assert_delivered_once_with_bcc(served, reply.decode(), message_id)


async def test_aiosmtplib_submits_through_starttls_and_auth_login(served: Served) -> None:
    raw, message_id = raw_message(to=VISIBLE)
    client = aiosmtplib.SMTP(hostname=served.host, port=served.port, start_tls=True,
                             tls_context=client_context(served.certs), timeout=30)
    await client.connect()
    await client.ehlo()  # after STARTTLS: auth_login does not say EHLO itself
    await client.auth_login(USER, PASSWORD)
    refused, reply = await client.sendmail("shop@example.test", [VISIBLE, HIDDEN], raw)
    await client.quit()
    assert refused == {}
    assert_delivered_once_with_bcc(served, reply, message_id)


def test_swaks_submits_through_starttls_and_auth(served: Served, tmp_path: Path) -> None:
    raw, message_id = raw_message(to=VISIBLE)
    (tmp_path / "message.eml").write_bytes(raw)
    result = subprocess.run(
        ["swaks", "--server", served.host, "--port", str(served.port), "--tls",
         "--tls-verify", "--tls-ca-path", served.certs.ca_file, "--auth", "PLAIN",
         "--auth-user", USER, "--auth-password", PASSWORD, "--from", "shop@example.test",
         "--to", f"{VISIBLE},{HIDDEN}", "--data", f"@{tmp_path / 'message.eml'}"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    (reply,) = [line for line in result.stdout.splitlines() if "queued as" in line]
    assert_delivered_once_with_bcc(served, reply, message_id)


def test_the_same_message_id_and_envelope_is_queued_once(served: Served) -> None:
    """The SMTP counterpart of Idempotency-Key; another envelope is another message
    (a client that split its recipients over transactions)."""
    raw, message_id = raw_message(to=VISIBLE)
    replies = []
    for recipient in (VISIBLE, VISIBLE, HIDDEN):
        with served.smtp() as client:
            client.mail("shop@example.test")
            client.rcpt(recipient)
            replies.append(client.data(raw)[1].decode())
    ids = [queued(reply)[0] for reply in replies]
    assert ids[0] == ids[1] != ids[2]
    assert "not queued again" in replies[1] and "not queued again" not in replies[0]
    assert served.final(ids[0])["status"] == served.final(ids[2])["status"] == "sent"
    assert sorted(m.rcpt_tos for m in served.sink.messages if m.message_id == message_id) == [
        (VISIBLE,), (HIDDEN,)]  # once per envelope


def test_8bitmime_and_smtputf8(served: Served) -> None:
    raw = ("From: shop@example.test\r\nTo: ann@example.test\r\nSubject: Grüße ✓\r\n"
           "Message-ID: <utf8.1@client.example.test>\r\nContent-Type: text/plain; "
           "charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSchöne Grüße\r\n").encode()
    with served.smtp() as client:
        features = client.esmtp_features
        assert {"8bitmime", "smtputf8"} <= set(features)
        client.mail("shop@example.test", ["BODY=8BITMIME", "SMTPUTF8"])
        client.rcpt(VISIBLE)
        code, reply = client.data(raw)
    assert code == 250
    assert served.final(queued(reply.decode())[0])["status"] == "sent"
    (received,) = [m for m in served.sink.messages
                   if m.message_id == "<utf8.1@client.example.test>"]
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert str(parsed["Subject"]) == "Grüße ✓"
    assert parsed.get_content().strip() == "Schöne Grüße"  # type: ignore[attr-defined]


def test_auth_is_required_and_checked(served: Served) -> None:
    with served.smtp(login=False) as client:
        assert client.docmd("MAIL FROM:<shop@example.test>")[0] == 530
        with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
            client.login(USER, "ob_not_the_key")
        assert wrong.value.smtp_code == 535 and b"5.7.8" in wrong.value.smtp_error
        with pytest.raises(smtplib.SMTPAuthenticationError) as reader:
            client.login("viewer", READ_ONLY_KEY)
        assert b"lacks the 'send' scope" in reader.value.smtp_error
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("viewer", PASSWORD)  # a key under another key's name


def test_a_key_revoked_during_a_session_sends_nothing_more_on_it(served: Served) -> None:
    """As HTTP refuses a revoked key at once, the next MAIL of a session that logged in
    with it is 530 5.7.0 naming the key, nothing is queued, and the session is logged
    out, so that it can log in again. A key made again under the same name (a rotation)
    is another key: the session is still refused until it logs in with the new one."""
    name = f"mailer-{secrets.token_hex(3)}"
    with served.outbox.client(ADMIN_KEY) as admin, served.smtp(login=False) as client:
        old = admin.post("/v1/keys", json={"name": name, "scopes": ["send"]}).json()["key"]
        client.login(name, old)
        assert client.sendmail("shop@example.test", [VISIBLE], raw_message()[0]) == {}
        assert admin.delete(f"/v1/keys/{name}").status_code == 204
        new = admin.post("/v1/keys", json={"name": name, "scopes": ["send"]}).json()["key"]
        refused_raw, refused_id = raw_message(to=VISIBLE)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("shop@example.test", [VISIBLE], refused_raw)
        assert refused.value.smtp_code == 530
        assert refused.value.smtp_error.decode() == (
            f"5.7.0 The API key '{name}' this session logged in with was revoked; log in "
            "again with an active key")
        assert client.docmd("MAIL FROM:<shop@example.test>")[0] == 530  # logged out
        client.login(name, new)
        assert client.sendmail("shop@example.test", [VISIBLE], raw_message()[0]) == {}
    assert refused_id not in served.message_ids()


def test_on_a_loopback_bind_auth_is_offered_before_tls(served: Served) -> None:
    with served.smtp(tls=False, login=False) as client:
        client.ehlo()
        assert "starttls" in client.esmtp_features and "auth" in client.esmtp_features
        client.login(USER, PASSWORD)


def test_a_blocked_attachment_is_refused_at_data_naming_the_file(served: Served) -> None:
    raw, message_id = raw_message(attachment=("invoice.pdf.exe", b"MZ not really"))
    with served.smtp() as client:
        client.mail("shop@example.test")
        client.rcpt(VISIBLE)
        code, reply = client.data(raw)
    assert code == 550
    assert reply.decode().startswith("5.7.1 'invoice.pdf.exe' is blocked")
    assert message_id not in served.message_ids()


def test_a_message_over_size_is_refused_at_mail(served: Served) -> None:
    """SIZE comes from [limits] max_message_size (default 25MB)."""
    with served.smtp() as client:
        assert client.esmtp_features["size"] == "25000000"
        code, reply = client.docmd("MAIL FROM:<shop@example.test> SIZE=25000001")
        assert (code, reply[:5]) == (552, b"5.3.4")
        assert client.docmd("MAIL FROM:<shop@example.test> SIZE=25000000")[0] == 250


def test_recipients_are_checked_one_by_one(served: Served) -> None:
    """Default max_recipients 1000: the 1001st gets 452 4.5.3; a bad one 553 5.1.3."""
    with served.smtp() as client:
        client.mail("shop@example.test")
        code, reply = client.docmd("RCPT TO:<ann@-bad.example.test>")
        assert (code, reply[:5]) == (553, b"5.1.3")
        # Unparseable to the stdlib itself (an unclosed domain literal): refused, not 500.
        code, reply = client.docmd("RCPT TO:<ann@[>")
        assert (code, reply[:5]) == (553, b"5.1.3")
        for n in range(1000):
            assert client.docmd(f"RCPT TO:<r{n}@example.test>")[0] == 250
        code, reply = client.docmd("RCPT TO:<one.too.many@example.test>")
        assert (code, reply[:5]) == (452, b"4.5.3")


def test_too_many_errors_close_the_connection(served: Served) -> None:
    """Default max_errors 20: the 20th 4xx/5xx reply is followed by 421 and a close."""
    with served.smtp() as client:
        client.mail("shop@example.test")
        for _ in range(19):
            assert client.docmd("RCPT TO:<bad@-x.test>")[0] == 553
        assert client.docmd("RCPT TO:<bad@-x.test>")[0] == 553
        code, reply = client.getreply()
        assert (code, reply[:5]) == (421, b"4.7.0")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_connections_over_max_connections_get_421(served: Served) -> None:
    """Default max_connections 100."""
    sockets = [socket.create_connection((served.host, served.port), timeout=10)
               for _ in range(100)]
    try:
        for sock in sockets:
            assert sock.recv(512).startswith(b"220 ")
        with socket.create_connection((served.host, served.port), timeout=10) as extra:
            assert extra.recv(512).startswith(b"421 4.7.0 ")
            assert extra.recv(512) == b""
    finally:
        for sock in sockets:
            sock.close()

    def greeted() -> bool:  # the slots come back once the server has seen the closes
        with socket.create_connection((served.host, served.port), timeout=10) as sock:
            return sock.recv(512).startswith(b"220 ")

    wait_until(greeted, timeout=10, message="a free connection slot")


# --- large messages: DATA spooled to a file, big attachments stored as they are read ----

def large_message(files: dict[str, bytes], body: str) -> tuple[bytes, str]:
    message = EmailMessage()
    message["From"] = "Shop <shop@example.test>"
    message["To"] = VISIBLE
    message["Subject"] = "large"
    message["Message-ID"] = f"<{secrets.token_hex(8)}@client.example.test>"
    message.set_content(body)
    for name, data in files.items():
        message.add_attachment(data, maintype="application", subtype="octet-stream",
                               filename=name)
    return message.as_bytes(policy=email.policy.SMTP), str(message["Message-ID"])


def delivered_files(served: Served, message_id: str) -> tuple[str, dict[str, bytes]]:
    (received,) = [m for m in served.sink.messages if m.message_id == message_id]
    parsed = email.message_from_bytes(received.data, policy=email.policy.SMTP)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content()), {
        str(part.get_filename()): bytes(part.get_content()) for part in parsed.iter_attachments()}


def submit_until_sent(served: Served, raw: bytes) -> None:
    """`raw` over SMTP submission: 250 at DATA, then delivered."""
    with served.smtp() as client:
        client.mail("shop@example.test")
        client.rcpt(VISIBLE)
        code, reply = client.data(raw)
    assert code == 250, reply
    assert served.final(queued(reply.decode())[0])["status"] == "sent"


def test_a_large_message_arrives_whole_with_its_attachments_byte_for_byte(
        served: Served) -> None:
    """Past 1 MB, DATA goes to a temporary file and each base64 attachment over 64 KB
    to the blob store as it is read (submission.spool); the rest is read as before. A
    line that starts with a dot (dot-stuffed by the client) and a small attachment
    that reads like the stand-in of a stored one arrive as they were written."""
    files = {"big.bin": os.urandom(3_000_000), "mid.bin": os.urandom(200_000),
             "fake.txt": b"outbox-spooled-part:" + b"0" * 32}
    body = "First line.\n.a line that starts with a dot\n..and two\n"
    raw, message_id = large_message(files, body)
    submit_until_sent(served, raw)
    text, delivered = delivered_files(served, message_id)
    assert text.replace("\r\n", "\n") == body
    assert delivered == files


def test_data_past_max_message_size_is_refused_at_its_end(served: Served) -> None:
    """Without a SIZE at MAIL, the 552 comes after the final dot (RFC 5321 4.2.5), the
    message is not queued, and the session goes on."""
    raw, message_id = large_message({"huge.bin": b"\0" * 19_000_000}, "too big\n")
    assert len(raw) > 25_000_000
    with served.smtp() as client:
        client.mail("shop@example.test")
        client.rcpt(VISIBLE)
        code, reply = client.data(raw)
        # The reply a declared SIZE gets at MAIL, not aiosmtpd's bare "Too much mail data".
        assert (code, reply) == (552, b"5.3.4 Message size exceeds the limit of 25000000 "
                                      b"bytes (limits.max_message_size)")
        client.mail("shop@example.test")
        client.rcpt(VISIBLE)
        small, small_id = raw_message(to=VISIBLE)
        assert client.data(small)[0] == 250
    assert message_id not in served.message_ids() and small_id in served.message_ids()


def test_a_line_over_1000_bytes_is_refused_at_the_end_of_data(served: Served) -> None:
    message_id = f"<{secrets.token_hex(8)}@client.example.test>"
    raw = (f"From: shop@example.test\r\nTo: {VISIBLE}\r\nSubject: long\r\n"
           f"Message-ID: {message_id}\r\n\r\n").encode() + b"x" * 1200 + b"\r\n"
    with served.smtp() as client:
        client.mail("shop@example.test")
        client.rcpt(VISIBLE)
        code, reply = client.data(raw)
        assert (code, reply) == (500, b"Line too long (see RFC5321 4.5.3.1.6)")
        assert client.noop()[0] == 250
    assert message_id not in served.message_ids()


def test_a_large_message_that_splits_otherwise_than_it_reads_is_read_whole(
        served: Served) -> None:
    """A part whose headers run into a line that is no header: the stdlib starts its
    body there, the line-by-line split after the empty line, so the stand-in would not
    come back as the attachment. The message is read whole instead, as before, and
    arrives as the stdlib reads it."""
    message_id = f"<{secrets.token_hex(8)}@client.example.test>"
    encoded = base64.encodebytes(os.urandom(1_500_000)).replace(b"\n", b"\r\n")
    raw = (f"From: shop@example.test\r\nTo: {VISIBLE}\r\nSubject: odd\r\n"
           f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="BB"\r\n\r\n'
           "--BB\r\nContent-Type: text/plain\r\n\r\nbody\r\n--BB\r\n"
           "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           "not a header line\r\n\r\n").encode() + encoded + b"--BB--\r\n"
    submit_until_sent(served, raw)
    whole = email.message_from_bytes(raw, policy=email.policy.SMTP)
    assert isinstance(whole, EmailMessage)
    (expected,) = [bytes(p.get_content()) for p in whole.iter_attachments()]
    assert delivered_files(served, message_id)[1] == {"attachment-1.bin": expected}
    assert b"a large message read whole" in served.outbox.log_path.read_bytes()


def test_a_large_message_is_refused_as_a_small_one_would_be(served: Served) -> None:
    """Its attachments stored as it was read, a large message with two From addresses
    gets the same refusal as a small one, and is not queued."""
    replies = []
    for size in (10, 1_500_000):
        raw, message_id = large_message({"f.bin": os.urandom(size)}, "hi\n")
        raw = raw.replace(b"From: Shop <shop@example.test>",
                          b"From: shop@example.test, other@example.test", 1)
        with served.smtp() as client:
            client.mail("shop@example.test")
            client.rcpt(VISIBLE)
            replies.append(client.data(raw))
        assert message_id not in served.message_ids()
    assert replies[0] == replies[1] and replies[0][0] == 550, replies


def test_a_large_message_with_nothing_to_store_apart_is_read_whole(served: Served) -> None:
    """Over 1 MB but no base64 attachment over 64 KB (a long text body, a small file):
    spooled to a file, then read whole, and it arrives as written."""
    body = "".join(f"line {n} of a long report\n" for n in range(60_000))
    files = {"small.bin": os.urandom(1000)}
    raw, message_id = large_message(files, body)
    assert len(raw) > 1_100_000
    submit_until_sent(served, raw)
    text, delivered = delivered_files(served, message_id)
    assert text.replace("\r\n", "\n") == body
    assert delivered == files
