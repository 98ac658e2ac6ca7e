"""build_message: the wire form, parsed back with the stdlib to check what a receiver sees."""

from __future__ import annotations

import base64
import email
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outbox.core.compose import Limits, Submission, plan_message
from outbox.core.content import EmbeddedFile, MessageContent
from outbox.core.mime import build_message
from outbox.core.routing import RoutingTable

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
DATE = "Wed, 01 May 2024 12:30:00 +0000"
MESSAGE_ID = "<20240501123000.abc123@example.com>"


def content(**overrides) -> MessageContent:
    """Stored content; lists and a headers dict as a client writes them."""
    values = {"from_": "Me <me@example.com>", "to": ["Bob <bob@example.org>"],
              "subject": "Hello", "text": "Hi Bob", "date": DATE}
    values.update(overrides)
    for key in ("to", "cc", "reply_to", "attachments"):
        values[key] = tuple(values.get(key, ()))
    values["headers"] = tuple(dict(values.get("headers", {})).items())
    return MessageContent(**values)


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def built(**overrides) -> EmailMessage:
    return parse(build_message(content(**overrides), MESSAGE_ID))


def wire_text(text: str) -> str:
    """A body as a receiver reads it back: CRLF line ends, one final line end."""
    text = re.sub(r"\r\n|\r|\n", "\n", text)
    return (text if text.endswith("\n") else text + "\n").replace("\n", "\r\n")


def attached(filename: str, data: bytes, content_type: str = "application/octet-stream"):
    return EmbeddedFile(filename, content_type, base64.b64encode(data).decode())


def assert_wire_safe(data: bytes) -> None:
    """CRLF only, and no line longer than RFC 5322 allows."""
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


# --- headers ---------------------------------------------------------------------------------

def test_headers_are_the_stored_content():
    msg = built(cc=["Carol <carol@example.net>", "dave@example.net"],
                reply_to=["replies@example.com"], headers={"X-Campaign": "spring",
                                                           "List-Id": "<news.example.com>"})
    assert msg["From"] == "Me <me@example.com>"
    assert msg["To"] == "Bob <bob@example.org>"
    assert msg["Cc"] == "Carol <carol@example.net>, dave@example.net"
    assert msg["Reply-To"] == "replies@example.com"
    assert msg["Subject"] == "Hello"
    assert msg["Date"] == DATE
    assert msg["Message-ID"] == MESSAGE_ID
    assert msg["MIME-Version"] == "1.0"
    assert msg["X-Campaign"] == "spring"
    assert msg["List-Id"] == "<news.example.com>"


def test_optional_headers_are_left_out_when_empty():
    msg = built(to=[], cc=[], reply_to=[])
    assert msg["To"] is None
    assert msg["Cc"] is None
    assert msg["Reply-To"] is None


def test_each_header_appears_once():
    msg = built(cc=["c@example.net"], headers={"X-A": "1"})
    for name in ("From", "To", "Cc", "Subject", "Date", "Message-ID", "X-A", "MIME-Version"):
        assert len(msg.get_all(name)) == 1, name


def test_no_bcc_header_ever():
    planned = plan_message(
        Submission(sender="me@example.com", to="bob@example.org", bcc=["Secret <s@example.net>"],
                   subject="Hi", text="body"),
        limits=Limits(), routing=RoutingTable((), "default"), known_relays=["default"], now=NOW,
        make_message_id=lambda domain: f"<id@{domain}>")
    data = build_message(planned.content, planned.message_id)
    assert parse(data)["Bcc"] is None
    assert b"s@example.net" not in data
    assert b"Secret" not in data
    assert b"bcc" not in data.lower()
    assert len(data) == planned.size


def test_international_headers_are_encoded_and_read_back():
    msg = built(from_="Zoë Ünïcode <zoe@example.com>",
                to=["山田 <yamada@example.jp>", "\"Doe, John\" <john@example.org>"],
                subject="Grüße aus Köln · 你好", headers={"X-Note": "café crème"})
    assert msg["From"] == "Zoë Ünïcode <zoe@example.com>"
    assert [str(a) for a in msg["To"].addresses] == ["山田 <yamada@example.jp>",
                                                     '"Doe, John" <john@example.org>']
    assert msg["Subject"] == "Grüße aus Köln · 你好"
    assert msg["X-Note"] == "café crème"


def test_a_long_subject_is_folded_and_read_back():
    subject = " ".join(["word"] * 100) + " " + "x" * 1200
    data = build_message(content(subject=subject), MESSAGE_ID)
    assert_wire_safe(data)
    assert parse(data)["Subject"] == subject


def test_crlf_line_endings_everywhere():
    data = build_message(content(text="one\ntwo\r\nthree\rfour", html="<p>x</p>",
                                 attachments=[attached("a.bin", b"\n\r\n\r")]), MESSAGE_ID)
    assert_wire_safe(data)


# --- bodies ----------------------------------------------------------------------------------

def test_text_only_is_a_single_text_plain_part():
    msg = built(text="Hi Bob,\n\nsee you.\n")
    assert msg.get_content_type() == "text/plain"
    assert not msg.is_multipart()
    assert msg.get_content() == wire_text("Hi Bob,\n\nsee you.\n")
    assert msg["Content-Transfer-Encoding"] == "7bit"


def test_html_only_is_a_single_text_html_part():
    msg = built(text=None, html="<p>Hi <b>Bob</b></p>")
    assert msg.get_content_type() == "text/html"
    assert msg.get_content() == wire_text("<p>Hi <b>Bob</b></p>")


def test_text_and_html_are_alternatives_text_first():
    msg = built(text="Hi Bob", html="<p>Hi Bob</p>")
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert msg.get_body(("plain",)).get_content() == wire_text("Hi Bob")
    assert msg.get_body(("html",)).get_content() == wire_text("<p>Hi Bob</p>")


def test_empty_text_is_an_empty_body():
    msg = built(text="")
    assert msg.get_content().strip() == ""


@pytest.mark.parametrize("text", [
    "Grüße, Zoë — 你好 😀",
    "x" * 5000,
    "a" * 600 + "\x0c" + "b" * 600,  # form feed is not a line break on the wire
    ".leading dot\n..two\nFrom the start\n",
    "trailing spaces   \nand tabs\t\n",
    "=3D looks like QP\n",
])
def test_bodies_survive_the_wire(text):
    data = build_message(content(text=text, html=f"<pre>{text}</pre>"), MESSAGE_ID)
    assert_wire_safe(data)
    msg = parse(data)
    assert msg.get_body(("plain",)).get_content() == wire_text(text)
    assert msg.get_body(("html",)).get_content() == wire_text(f"<pre>{text}</pre>")


CYRILLIC = "\n".join("".join(chr(0x430 + (i * 7 + j) % 32) for j in range(12)) + ", 42"
                     for i in range(50))


@pytest.mark.parametrize(("text", "cte"), [
    ("plain ascii", "7bit"),
    ("x" * 900, "7bit"),
    ("x" * 901, "quoted-printable"),
    ("a" * 600 + "\x0c" + "b" * 600, "quoted-printable"),
    ("café", "quoted-printable"),
    ("Résumé of the café visit, naïve but fine.\n" * 50, "quoted-printable"),
    (CYRILLIC, "base64"),
    ("中文的邮件正文" * 200, "base64"),
    ("é" * 5000, "base64"),
])
def test_transfer_encoding_keeps_text_readable(text, cte):
    assert built(text=text)["Content-Transfer-Encoding"] == cte


@pytest.mark.parametrize("text", [CYRILLIC + "\r\n" + CYRILLIC, "中文" * 3000,
                                  "é" * 5000 + "\nend"])
def test_text_mostly_outside_ascii_goes_base64_at_most_a_third_over_its_bytes(text):
    """Quoted-printable tripled it: 'é' * 6,000,000 was 37 MB encoded, over a 25 MB limit."""
    msg = built(text=text)
    body = msg.get_body(("plain",))
    encoded = body.get_payload(decode=False).encode("ascii")
    assert body.get_content() == wire_text(text)
    assert len(encoded) <= len(wire_text(text).replace("\n", "\r\n").encode("utf-8")) * 1.4


# --- attachments -----------------------------------------------------------------------------

def test_attachments_are_byte_identical():
    files = [
        ("all-bytes.bin", bytes(range(256)) * 50, "application/octet-stream"),
        ("report.pdf", b"%PDF-1.7\n" + bytes(range(255, -1, -1)), "application/pdf"),
        ("notes.txt", b"line one\r\nline two\nline three\r", "text/plain"),
        ("empty.dat", b"", "application/octet-stream"),
        ("résumé 2024.pdf", b"\x00\xff" * 10, "application/pdf"),
        ('quote"and;semicolon.txt', b"q", "text/plain"),
    ]
    msg = built(html="<p>x</p>", attachments=[attached(*f) for f in files])
    assert msg.get_content_type() == "multipart/mixed"
    found = list(msg.iter_attachments())
    assert [(a.get_filename(), a.get_content_type()) for a in found] == [
        (name, ctype) for name, _, ctype in files]
    for part, (_, data, _) in zip(found, files, strict=True):
        assert part.get_payload(decode=True) == data
        assert part.get_content_disposition() == "attachment"
    assert msg.get_body(("plain",)).get_content() == wire_text("Hi Bob")
    assert msg.get_body(("html",)).get_content() == wire_text("<p>x</p>")


def test_attachment_without_a_content_type_is_octet_stream():
    msg = built(attachments=[EmbeddedFile("a.bin", "", "AAE=")])
    (part,) = msg.iter_attachments()
    assert part.get_content_type() == "application/octet-stream"
    assert part.get_payload(decode=True) == b"\x00\x01"


def test_every_build_of_the_same_content_has_the_same_size_and_text():
    """Only the MIME boundary (from the email package) may differ between attempts."""
    stored = content(html="<p>x</p>", attachments=[attached("a.bin", bytes(range(256)))])
    first, second = build_message(stored, MESSAGE_ID), build_message(stored, MESSAGE_ID)
    assert len(first) == len(second)
    boundary = re.compile(rb"={15}\d+==")
    assert boundary.sub(b"B", first) == boundary.sub(b"B", second)


# --- properties ------------------------------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=300)
_SUBJECT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=80)
_FILENAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,30}\.(pdf|txt|bin|png)", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(text=_TEXT, html=st.one_of(st.none(), _TEXT), subject=_SUBJECT,
       files=st.lists(st.tuples(_FILENAME, st.binary(max_size=2000)), max_size=3))
def test_any_message_parses_back_to_what_was_stored(text, html, subject, files):
    data = build_message(content(text=text, html=html, subject=subject,
                                 attachments=[attached(n, d) for n, d in files]), MESSAGE_ID)
    assert_wire_safe(data)
    msg = parse(data)
    assert msg["Subject"] == subject.lstrip(" ")  # a receiver drops the space after the colon
    assert msg["Message-ID"] == MESSAGE_ID
    assert msg.get_body(("plain",)).get_content() == wire_text(text)
    if html is not None:
        assert msg.get_body(("html",)).get_content() == wire_text(html)
    found = list(msg.iter_attachments())
    assert [(p.get_filename(), p.get_payload(decode=True)) for p in found] == files


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=200))
def test_any_custom_header_value_parses_back(value):
    assert built(headers={"X-Value": value})["X-Value"] == value.lstrip(" ")
