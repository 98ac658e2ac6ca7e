"""core.inbound_headers through core.inbound: header bytes read as UTF-8 (RFC 6532),
bytes that are not UTF-8 refused naming their header. Pure: no I/O."""

from __future__ import annotations

import base64

import pytest

from outbox.core.inbound import Envelope, read_message
from outbox.errors import InputError

ENVELOPE = Envelope("app@example.test", ("ann@example.test",))


def test_raw_utf8_names_subject_and_kept_headers_read_as_written() -> None:
    sub = read_message("From: Jürgen <app@example.test>\r\nTo: Ann Ölund <ann@example.test>"
                       "\r\nCc: Zoë <zoe@example.test>\r\nReply-To: Büro <user@bücher.example>"
                       "\r\nSubject: Grüße ✓\r\nX-Note: héllo\r\n\r\nHallo\r\n".encode(),
                       ENVELOPE)
    assert sub.sender == "Jürgen <app@example.test>"
    assert (sub.to, sub.cc) == (["Ann Ölund <ann@example.test>"], ["Zoë <zoe@example.test>"])
    assert sub.reply_to == ["Büro <user@bücher.example>"]
    assert (sub.subject, sub.headers) == ("Grüße ✓", {"X-Note": "héllo"})


@pytest.mark.parametrize(("header", "field"), [
    (b"From: J\xfcrgen <app@example.test>", "from"),
    (b"To: \xc3 <ann@example.test>", "to"),
    (b"Subject: Gr\xfc\xdfe", "subject"),
    (b"X-Note: caf\xe9", "headers.X-Note"),
])
def test_a_header_that_is_not_utf8_is_refused_naming_it(header: bytes, field: str) -> None:
    name = header.split(b":")[0].decode()
    message = b"From: app@example.test\r\n" if name != "From" else b""
    with pytest.raises(InputError) as refused:
        read_message(message + header + b"\r\n\r\nHallo\r\n", ENVELOPE)
    assert refused.value.message.startswith(f"header {name} is not valid UTF-8: ")
    assert refused.value.field == field


def test_a_dropped_header_may_hold_any_bytes() -> None:
    """A Received header is never read nor written: its bytes refuse nothing."""
    sub = read_message(b"Received: from h\xfcbsch by relay\r\nFrom: app@example.test\r\n"
                       b"To: ann@example.test\r\n\r\nHallo\r\n", ENVELOPE)
    assert sub.sender == "app@example.test"


def test_an_attached_message_keeps_its_bytes_and_a_utf8_filename_reads() -> None:
    inner = "From: Jürgen <j@example.test>\r\nSubject: Grüße\r\n\r\nhallo\r\n".encode()
    raw = (b"From: app@example.test\r\nTo: ann@example.test\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=BB\r\n\r\n--BB\r\n"
           b"Content-Type: text/plain\r\n\r\nbody\r\n--BB\r\n"
           b"Content-Type: message/rfc822\r\n\r\n" + inner + b"--BB\r\n"
           b"Content-Type: application/pdf\r\nContent-Disposition: attachment; "
           + 'filename="Résumé.pdf"'.encode() + b"\r\n\r\nPDF\r\n--BB--\r\n")
    eml, pdf = read_message(raw, ENVELOPE).attachments
    assert base64.b64decode(eml.content_base64) == inner.removesuffix(b"\r\n")
    assert pdf.filename == "Résumé.pdf"
