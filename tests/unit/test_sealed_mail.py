"""Signed or encrypted mail over SMTP submission goes out as it came: its body byte for
byte under its own Content-Type, after headers Outbox writes as for any message (no
signature covers them). The files inside signed mail are judged as attachments are;
encrypted mail as the one file it is. Pure core: no I/O (a real S/MIME signature,
verified by openssl after delivery: tests/e2e/test_mime_rebuilt.py)."""

from __future__ import annotations

import base64
import email
import hashlib
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from typing import cast

import pytest

from outbox.core.compose import Limits, PlannedMessage, Submission, plan_message
from outbox.core.content import AttachmentRef
from outbox.core.inbound import Envelope, read_message
from outbox.core.mime import build_message, plan_mime
from outbox.core.routing import RoutingTable
from outbox.errors import AttachmentBlocked, InputError, MessageTooLarge
from outbox.store.rows import content_json, to_content

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ENVELOPE = Envelope("shop@example.test", ("ann@example.test", "bcc@example.test"))
SIGNED_TYPE = ('multipart/signed; protocol="application/pkcs7-signature";\r\n'
               ' micalg=sha-256; boundary="----sig 1"')
SIGNED_BODY = (b"This is an S/MIME signed message\r\n\r\n"
               b"------sig 1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
               b"signed text, trailing blanks kept   \r\n.a line with a dot\r\n\r\n"
               b"------sig 1\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nMIIBdummy\r\n------sig 1--\r\n")


def raw(content_type: str, body: bytes, *more_headers: str) -> bytes:
    head = ("From: Shop <shop@example.test>\r\nTo: ann@example.test\r\nSubject: signed\r\n"
            "Message-ID: <s1@client.example.test>\r\nBcc: bcc@example.test\r\n"
            "MIME-Version: 1.0\r\n" + "".join(f"{h}\r\n" for h in more_headers)
            + f"Content-Type: {content_type}\r\n\r\n")
    return head.encode() + body


def plan(submission: Submission, limits: Limits | None = None) -> PlannedMessage:
    return plan_message(submission, limits=limits or Limits(),
                        routing=RoutingTable((), "default"), known_relays=["default"], now=NOW,
                        make_message_id=lambda domain: f"<gen@{domain}>")


def sent(planned: PlannedMessage, body: bytes) -> bytes:
    blobs = {hashlib.sha256(body).hexdigest(): body}
    data = build_message(planned.content, planned.message_id, blobs)
    assert len(data) == plan_mime(planned.content, planned.message_id).size  # exact size
    return data


def test_signed_mail_goes_out_with_its_body_byte_for_byte() -> None:
    submission = read_message(raw(SIGNED_TYPE, SIGNED_BODY), ENVELOPE)
    planned = plan(submission)
    sealed = planned.content.sealed_body
    assert sealed is not None and sealed.size == len(SIGNED_BODY)
    data = sent(planned, SIGNED_BODY)
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == SIGNED_BODY
    # The Content-Type as it came, unfolded, its boundary as written (quotes, blank).
    assert (b'\r\nContent-Type: multipart/signed; protocol="application/pkcs7-signature"; '
            b'micalg=sha-256; boundary="----sig 1"\r\n') in head + b"\r\n"
    parsed = cast(EmailMessage, email.message_from_bytes(data, policy=SMTP))
    assert parsed["Message-ID"] == "<s1@client.example.test>" and parsed["Bcc"] is None
    assert parsed["Subject"] == "signed" and parsed["From"] == "Shop <shop@example.test>"
    assert [p.get_content_type() for p in parsed.iter_parts()] == [
        "text/plain", "application/pkcs7-signature"]
    assert [r.address for r in planned.recipients] == ["ann@example.test", "bcc@example.test"]


def test_a_sealed_body_is_stored_and_read_back_as_sealed() -> None:
    content = plan(read_message(raw(SIGNED_TYPE, SIGNED_BODY), ENVELOPE)).content
    back = to_content(content_json(content))
    assert back == content and back.sealed_body is not None and back.attached == ()


def test_pgp_encrypted_mail_goes_out_as_it_came() -> None:
    body = (b"--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
            b"--enc\r\nContent-Type: application/octet-stream; name=encrypted.asc\r\n\r\n"
            b"-----BEGIN PGP MESSAGE-----\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n--enc--\r\n")
    kind = 'multipart/encrypted; protocol="application/pgp-encrypted"; boundary=enc'
    planned = plan(read_message(raw(kind, body), ENVELOPE))
    head, _, out = sent(planned, body).partition(b"\r\n\r\n")
    assert out == body and f"\r\nContent-Type: {kind}\r\n".encode() in head + b"\r\n"


def test_smime_encrypted_mail_keeps_its_base64_and_file_name() -> None:
    body = b"MIAGCSqGSIb3DQEHA6CAMIACAQAxggFA\r\nMIIBPAIBADAkMB8xHTAbBgNVBAMMFGFs\r\n"
    kind = 'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"'
    submission = read_message(raw(kind, body, "Content-Transfer-Encoding: base64",
                                  'Content-Disposition: attachment; filename="smime.p7m"'),
                              ENVELOPE)
    parsed = email.message_from_bytes(sent(plan(submission), body), policy=SMTP)
    assert parsed.get_content_type() == "application/pkcs7-mime"
    assert parsed.get_param("smime-type") == "enveloped-data"
    assert parsed["Content-Transfer-Encoding"] == "base64"
    assert parsed.get_filename() == "smime.p7m"
    assert parsed.get_payload(decode=True) == base64.b64decode(body)


def signed_with(filename: str, data: bytes) -> Submission:
    inner = EmailMessage()
    inner.set_content("see the file")
    inner.add_attachment(data, maintype="application", subtype="octet-stream",
                         filename=filename)
    body = (b"--s\r\n" + inner.as_bytes(policy=SMTP) + b"\r\n--s\r\n"
            b"Content-Type: application/pkcs7-signature\r\n\r\nsig\r\n--s--\r\n")
    return read_message(raw('multipart/signed; protocol="application/pkcs7-signature"; '
                            "boundary=s", body), ENVELOPE)


EXE = b"MZ\x90\x00" + b"\x00" * 60 + b"This program cannot be run in DOS mode"


@pytest.mark.parametrize(("filename", "data", "error"), [
    ("tool.exe", b"plain bytes", AttachmentBlocked),  # by its name
    ("report.pdf", EXE, AttachmentBlocked),  # by what it is
    ("big.bin", b"x" * 101, MessageTooLarge),  # limits.max_attachment_size
])
def test_the_files_inside_signed_mail_are_judged_as_attachments(
        filename: str, data: bytes, error: type[InputError]) -> None:
    submission = signed_with(filename, data)
    assert [a.filename for a in submission.inspected] == [filename]
    with pytest.raises(error) as info:
        plan(submission, Limits(blocked_extensions=frozenset({".exe"}),
                                max_attachment_size=100))
    assert filename in info.value.message
    plan(signed_with("notes.txt", b"fine"), Limits(blocked_extensions=frozenset({".exe"})))


def test_encrypted_mail_is_judged_as_the_file_it_is_under_an_allow_list() -> None:
    body = b"MIAGCSqGSIb3DQEHA6CAMIACAQAxggFA\r\n"
    submission = read_message(raw("application/pkcs7-mime; smime-type=enveloped-data", body,
                                  "Content-Transfer-Encoding: base64"), ENVELOPE)
    allow_pdf = Limits(extension_policy="allow", allowed_extensions=frozenset({".pdf"}))
    with pytest.raises(AttachmentBlocked) as info:
        plan(submission, allow_pdf)
    assert "smime.p7m" in info.value.message
    allowed = plan(submission, Limits(extension_policy="allow",
                                      allowed_extensions=frozenset({".pdf", ".p7m"})))
    assert isinstance(allowed.content.sealed_body, AttachmentRef)


@pytest.mark.parametrize(("body", "encoding", "says"), [
    (SIGNED_BODY.replace(b"\r\n", b"\n"), None, "7bit lines"),  # bare LF: not as signed
    (SIGNED_BODY.replace(b"signed text", "signed t\u00e9xt".encode()), None, "7bit lines"),
    (SIGNED_BODY, "quoted-printable", "Content-Transfer-Encoding"),
    (SIGNED_BODY, "7bit\nX-Bare: LF", "7bit lines"),  # headers ending in a bare LF
])
def test_a_body_that_cannot_go_as_it_came_is_refused_in_one_line(
        body: bytes, encoding: str | None, says: str) -> None:
    extra = (f"Content-Transfer-Encoding: {encoding}",) if encoding else ()
    with pytest.raises(InputError) as info:
        read_message(raw(SIGNED_TYPE, body, *extra), ENVELOPE)
    assert says in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize(("disposition", "name"), [
    ('Content-Disposition: attachment; filename="statement.p7m"', "statement.p7m"),
    (None, "smime.p7m"),  # none given
])
def test_smime_encrypted_mail_goes_under_the_file_name_it_came_with(
        disposition: str | None, name: str) -> None:
    body = b"MIAGCSqGSIb3DQEHA6CAMIACAQAxggFA\r\n"
    headers = ["Content-Transfer-Encoding: base64", *([disposition] if disposition else [])]
    submission = read_message(raw("application/pkcs7-mime; smime-type=enveloped-data", body,
                                  *headers), ENVELOPE)
    assert submission.attachments[0].filename == name
    parsed = email.message_from_bytes(sent(plan(submission), body), policy=SMTP)
    assert parsed.get_filename() == name
