"""plan_mime: structure, encodings, headers, boundaries, and sizes known without
encoding (equal to what is written), parsed back with the stdlib."""

from __future__ import annotations

import base64
import email
import hashlib
import re
from dataclasses import replace
from datetime import datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outbox.core import mime_headers
from outbox.core.content import AttachmentRef, EmbeddedFile, LinkRef, MessageContent
from outbox.core.mime import BlobPart, build_message, plan_mime
from outbox.core.mime_encode import Base64Lines, base64_lines, base64_size, encode_text

DATE = "Wed, 01 May 2024 12:30:00 +0000"
MESSAGE_ID = "<20240501123000.abc123@example.com>"


def file(name: str, data: bytes, content_type: str = "application/octet-stream",
         **extra: Any) -> AttachmentRef:
    return AttachmentRef(name, content_type, hashlib.sha256(data).hexdigest(), len(data),
                         **extra)


def content(**overrides: Any) -> MessageContent:
    """Stored content; lists and a headers dict as a client writes them."""
    values: dict[str, Any] = {"from_": "Me <me@example.com>", "to": ["bob@example.org"],
                              "subject": "Hello", "text": "Hi", "date": DATE}
    values.update(overrides)
    for key in ("to", "cc", "reply_to", "attachments"):
        values[key] = tuple(values.get(key, ()))
    values["headers"] = tuple(dict(values.get("headers", {})).items())
    return MessageContent(**values)


def written(stored: MessageContent, files: dict[str, bytes] | None = None) -> bytes:
    blobs = {hashlib.sha256(d).hexdigest(): d for d in (files or {}).values()}
    return build_message(stored, MESSAGE_ID, blobs)


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def tree(msg: EmailMessage) -> Any:
    """The MIME structure as nested (type, [children]) / type."""
    if msg.is_multipart():
        return (msg.get_content_type(), [tree(p) for p in msg.iter_parts()])  # type: ignore[arg-type]
    return msg.get_content_type()


def assert_wire_safe(data: bytes) -> None:
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


LOGO = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 20


# --- structure ------------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "files", "expected"), [
    ({}, {}, "text/plain"),
    ({"text": None, "html": "<p>x</p>"}, {}, "text/html"),
    ({"html": "<p>x</p>"}, {}, ("multipart/alternative", ["text/plain", "text/html"])),
    ({"attachments": [file("a.pdf", PDF, "application/pdf")]}, {"a": PDF},
     ("multipart/mixed", ["text/plain", "application/pdf"])),
    ({"text": None, "html": '<img src="cid:logo">',
      "attachments": [file("logo.png", LOGO, "image/png", content_id="logo")]}, {"l": LOGO},
     ("multipart/related", ["text/html", "image/png"])),
    ({"html": '<img src="cid:logo">',
      "attachments": [file("logo.png", LOGO, "image/png", content_id="logo"),
                      file("a.pdf", PDF, "application/pdf")]}, {"l": LOGO, "a": PDF},
     ("multipart/mixed", [("multipart/alternative", [
         "text/plain", ("multipart/related", ["text/html", "image/png"])]),
         "application/pdf"])),
])
def test_the_structure_has_only_the_levels_it_needs(overrides: dict[str, Any],
                                                     files: dict[str, bytes],
                                                     expected: Any) -> None:
    assert tree(parse(written(content(**overrides), files))) == expected


def test_an_inline_image_is_found_by_its_content_id() -> None:
    stored = content(html='<p><img src="cid:logo@shop"></p>',
                     attachments=[file("logo.png", LOGO, "image/png", content_id="logo@shop")])
    msg = parse(written(stored, {"l": LOGO}))
    (image,) = [p for p in msg.walk() if p["Content-ID"] == "<logo@shop>"]
    assert image.get_content_disposition() == "inline"
    assert image.get_payload(decode=True) == LOGO
    related = next(p for p in msg.walk() if p.get_content_type() == "multipart/related")
    assert related.get_param("type") == "text/html"
    assert msg.get_body(("html",)).get_content() == '<p><img src="cid:logo@shop"></p>\r\n'
    assert msg.get_body(("plain",)).get_content() == "Hi\r\n"


def test_files_are_byte_identical_and_named() -> None:
    files = {"empty.dat": b"", "one.bin": b"\x01", "Résumé 2026.pdf": PDF,
             "x" * 40 + " é " + "y" * 80 + ".bin": bytes(range(256)) * 3,
             'quote"and;semi.txt': b"q"}
    stored = content(attachments=[file(name, data) for name, data in files.items()])
    msg = parse(written(stored, files))
    found = {p.get_filename(): p.get_payload(decode=True) for p in msg.iter_attachments()}
    assert found == files


def test_a_utf8_filename_uses_rfc2231_and_rfc2047() -> None:
    data = written(content(attachments=[file("Résumé 2026.pdf", PDF, "application/pdf")]),
                   {"r": PDF})
    assert b"filename*=utf-8''R%C3%A9sum%C3%A9%202026.pdf" in data
    assert b'name="=?utf-8?' in data  # RFC 2047 too, for clients that read only name
    (part,) = parse(data).iter_attachments()
    assert part.get_param("name") == "Résumé 2026.pdf"
    assert part.get_filename() == "Résumé 2026.pdf"


def test_legacy_content_base64_is_still_written() -> None:
    legacy = EmbeddedFile("a.bin", "application/octet-stream",
                          base64.b64encode(b"\x00\x01").decode())
    msg = parse(written(content(attachments=[legacy])))
    (part,) = msg.iter_attachments()
    assert part.get_payload(decode=True) == b"\x00\x01"


def test_a_linked_file_is_a_note_not_a_part() -> None:
    link = LinkRef("https://outbox.example/d/TOKEN",
                   datetime.fromisoformat("2024-05-08T12:30:00+00:00"))
    stored = content(html="<html><body><p>Hi</p></body></html>",
                     attachments=[file("big.iso", b"x" * 10, link=link)])
    plan = plan_mime(stored, MESSAGE_ID)
    assert plan.blobs == ()
    msg = parse(written(stored))
    assert list(msg.iter_attachments()) == []
    text = msg.get_body(("plain",)).get_content()
    assert "big.iso (10 bytes): https://outbox.example/d/TOKEN" in text
    assert "2024-05-08 12:30 UTC" in text
    html = msg.get_body(("html",)).get_content()
    assert '<a href="https://outbox.example/d/TOKEN">big.iso</a>' in html
    assert html.index("big.iso") < html.index("</body>")


# --- sizes ----------------------------------------------------------------------------------

@given(st.integers(0, 5000))
def test_base64_size_is_the_encoded_length(size: int) -> None:
    assert base64_size(size) == len(base64_lines(bytes(size)))


@settings(max_examples=200)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=10))
def test_incremental_base64_equals_the_whole(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts})
    lines = Base64Lines()
    pieces = [lines.feed(data[a:b]) for a, b in zip([0, *points], [*points, len(data)],
                                                    strict=True)]
    assert b"".join(pieces) + lines.finish() == base64_lines(data)


@pytest.mark.parametrize("size", [0, 1, 57 * 64 - 1, 57 * 64, 57 * 64 + 1, 100_003, 1_048_572])
def test_base64_lines_are_what_the_stdlib_writes(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert base64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")


def test_base64_lines_are_76_columns() -> None:
    encoded = base64_lines(bytes(range(256)) * 10)
    lines = encoded.split(b"\r\n")
    assert set(map(len, lines[:-2])) == {76}
    assert lines[-1] == b""


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
_NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
                              blacklist_characters="/\\"), min_size=1, max_size=120)


@settings(max_examples=80, deadline=None)
@given(text=st.one_of(st.none(), _TEXT), html=st.one_of(st.none(), _TEXT), subject=_TEXT,
       names=st.lists(_NAME, max_size=3), sizes=st.lists(st.integers(0, 400), max_size=3),
       inline=st.booleans())
def test_the_planned_size_is_the_written_size(text: str | None, html: str | None,
                                              subject: str, names: list[str],
                                              sizes: list[int], inline: bool) -> None:
    """A property: the size is known without encoding any file, and equals the bytes
    written, whatever the text, subject, filenames and file sizes."""
    files = {f"{i}:{name}": bytes([i]) * size for i, (name, size) in enumerate(zip(names, sizes,
                                                                                  strict=False))}
    attachments = [file(key.split(":", 1)[1], data) for key, data in files.items()]
    if inline and html is not None:
        files["logo"] = LOGO
        attachments.append(file("logo.png", LOGO, "image/png", content_id="logo"))
    stored = content(text=text, html=html, subject=subject.replace("\r", "").replace("\n", ""),
                     attachments=attachments)
    plan = plan_mime(stored, MESSAGE_ID)
    data = written(stored, files)
    assert plan.size == len(data)
    assert_wire_safe(data)
    assert {p.sha256 for p in plan.blobs} == {a.sha256 for a in attachments}
    assert all(isinstance(p, BlobPart) for p in plan.blobs)


def test_the_size_of_a_100_mb_file_is_arithmetic() -> None:
    plan = plan_mime(content(attachments=[file("big.bin", b"")]), MESSAGE_ID)
    big = plan_mime(content(attachments=[replace(file("big.bin", b""), size=100_000_000)]),
                    MESSAGE_ID)
    assert big.size - plan.size == base64_size(100_000_000)


# --- encodings and headers ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "encoding"), [
    ("plain", "7bit"), ("x" * 900, "7bit"), ("x" * 901, "quoted-printable"),
    ("café", "quoted-printable"), ("nul\x00", "quoted-printable"),
])
def test_text_is_7bit_when_it_can_be(text: str, encoding: str) -> None:
    assert encode_text(text)[1] == encoding


def test_quoted_printable_lines_stay_under_76_columns() -> None:
    body, encoding = encode_text("a long line with café in it " * 20 + "\n" + "trailing space \n")
    assert encoding == "quoted-printable"
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert b"space=20\r\n" in body


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_no_header_value_can_start_a_new_header(value: str) -> None:
    """Even a CR or LF that got this far (compose refuses them) cannot escape."""
    line = mime_headers.unstructured("X-Value", value)
    assert line.endswith("\r\n")
    body = line[:-2]
    assert "\n" not in body.replace("\r\n", "") and "\r" not in body.replace("\r\n", "")
    for continuation in body.split("\r\n")[1:]:
        assert continuation[:1] in (" ", "\t")
    assert all(len(part) <= 998 for part in body.split("\r\n"))


def test_long_headers_are_folded_at_78_columns() -> None:
    data = written(content(subject=" ".join(["word"] * 60),
                           to=[f"Person {n} <p{n}@example.org>" for n in range(10)]))
    head = data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    msg = parse(data)
    assert msg["Subject"] == " ".join(["word"] * 60)
    assert len(msg["To"].addresses) == 10


def test_non_ascii_display_names_are_encoded_words() -> None:
    data = written(content(from_="Zoë <zoe@example.com>", to=["山田 <y@example.jp>"]))
    assert b"From: =?utf-8?q?Zo=C3=AB?= <zoe@example.com>" in data
    assert parse(data)["To"] == "山田 <y@example.jp>"
    assert plan_mime(content(), MESSAGE_ID).eight_bit is False


def test_a_utf8_local_part_stays_utf8() -> None:
    plan = plan_mime(content(to=["jörg@example.de"]), MESSAGE_ID)
    assert plan.eight_bit is True
    assert "To: jörg@example.de\r\n".encode() in b"".join(
        s for s in plan.segments if isinstance(s, bytes))


# --- boundaries -----------------------------------------------------------------------------

def test_every_plan_of_the_same_content_writes_the_same_bytes() -> None:
    stored = content(html="<p>x</p>", attachments=[file("a.pdf", PDF)])
    assert written(stored, {"a": PDF}) == written(stored, {"a": PDF})
    other = build_message(stored, "<other@example.com>", {file("a", PDF).sha256: PDF})
    assert other != written(stored, {"a": PDF})  # boundaries come from the Message-ID


def test_a_text_containing_the_boundary_gets_another_one() -> None:
    stored = content(html="<p>x</p>")
    boundary = re.search(rb'boundary="([^"]+)"', written(stored)).group(1).decode()  # type: ignore[union-attr]
    tricky = content(text=f"--{boundary}\nnot a part\n--{boundary}--", html="<p>x</p>")
    data = written(tricky)
    assert f'boundary="{boundary}"'.encode() not in data
    msg = parse(data)
    assert msg.get_body(("plain",)).get_content().startswith(f"--{boundary}")
    assert tree(msg) == ("multipart/alternative", ["text/plain", "text/html"])
