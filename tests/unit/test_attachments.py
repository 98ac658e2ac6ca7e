"""Attachments at submit: the type policy (extension, content, allow-list), inline
images, send-as-link (signed, expiring tokens) and what is stored for each file."""

from __future__ import annotations

import base64
import hashlib
import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outbox.core.attachments import (
    AttachmentIn,
    FileInfo,
    TypePolicy,
    check_type,
    is_windows_executable,
    last_extension,
)
from outbox.core.compose import Limits, PlannedBlob, Submission, plan_message
from outbox.core.content import AttachmentRef
from outbox.core.links import LinkPolicy, LinkTicket, read_link, sign_link
from outbox.core.routing import RoutingTable
from outbox.errors import AttachmentBlocked, InputError, LinkExpired, LinkInvalid

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
BLOCK = TypePolicy("block", frozenset({".exe", ".js", "scr"}))
ALLOW = TypePolicy("allow", allowed=frozenset({".pdf", "PNG"}))
KEY = b"k" * 32


def pe_executable(stub: bytes = b"") -> bytes:
    """The head of a minimal Windows PE: 'MZ', e_lfanew at 0x3C, 'PE\\0\\0' there."""
    header = bytearray(b"MZ" + b"\0" * 0x3E)
    header[0x3C:0x40] = struct.pack("<I", 0x80)
    return bytes(header) + stub.ljust(0x40, b"\0") + b"PE\0\0" + b"\x4c\x01" + b"\0" * 200


def plan(*attachments: AttachmentIn, limits: Limits | None = None,
         files: list[FileInfo] | None = None, links: LinkPolicy | None = None,
         html: str | None = None):
    return plan_message(
        Submission(sender="me@example.com", to="bob@example.org", subject="Hi", text="body",
                   html=html, attachments=attachments),
        limits=limits or Limits(blocked_extensions=frozenset({".exe"})),
        routing=RoutingTable((), "default"), known_relays=["default"], now=NOW,
        make_message_id=lambda domain: f"<id@{domain}>", files=files, links=links)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the type policy ------------------------------------------------------------------------

def test_a_windows_executable_is_known_by_its_content() -> None:
    assert is_windows_executable(pe_executable())
    assert is_windows_executable(b"MZ" + b"\0" * 100 + b"This program cannot be run in DOS mode")
    assert not is_windows_executable(b"MZ" + b"\0" * 100)  # 'MZ' alone: random data does that
    assert not is_windows_executable(b"%PDF-1.7\n")
    assert not is_windows_executable(b"")


def test_a_renamed_executable_is_refused_naming_the_file_and_the_rule() -> None:
    with pytest.raises(AttachmentBlocked) as caught:
        plan(AttachmentIn("report.pdf", b64(pe_executable()), "application/pdf"))
    error = caught.value
    assert error.field == "attachments[0].filename"
    assert error.code == "attachment_blocked"
    assert "'report.pdf'" in error.message
    assert "Windows executable" in error.message
    assert "limits.blocked_extensions" in error.message


@pytest.mark.parametrize("name", ["setup.exe", "invoice.pdf.exe", "invoice.exe. ", "x.SCR"])
def test_blocked_and_double_extensions_are_refused(name: str) -> None:
    with pytest.raises(AttachmentBlocked, match=r"limits\.blocked_extensions"):
        check_type(name, (), BLOCK, "f")


@pytest.mark.parametrize(("name", "sniffed"), [
    ("report.pdf", (".pdf", ".fdf")),   # the content agrees with the name
    ("budget.xlsx", (".doc", ".msi")),  # ambiguous content: some reading is allowed
    ("photo.png", ()),                  # nothing known
    ("invoice.exe.pdf", ()),            # the last extension decides
])
def test_content_that_agrees_or_is_ambiguous_passes(name: str, sniffed: tuple[str, ...]) -> None:
    check_type(name, sniffed, TypePolicy("block", frozenset({".exe", ".msi"})), "f")


def test_allow_list_mode_refuses_everything_else() -> None:
    check_type("a.pdf", (".pdf",), ALLOW, "f")
    check_type("b.PNG", (), ALLOW, "f")
    for name in ("notes.txt", "no-extension", "a.pdf.zip"):
        with pytest.raises(AttachmentBlocked, match=r"only files ending in \.pdf, \.png"):
            check_type(name, (), ALLOW, "f")
    with pytest.raises(AttachmentBlocked, match=r"a \.zip file.*limits\.allowed_extensions"):
        check_type("a.pdf", (".zip",), ALLOW, "f")


def test_allow_list_mode_through_plan_message() -> None:
    limits = Limits(allowed_extensions=frozenset({".pdf"}), extension_policy="allow")
    plan(AttachmentIn("a.pdf", b64(b"%PDF-1.7")), limits=limits)
    with pytest.raises(AttachmentBlocked) as caught:
        plan(AttachmentIn("a.pdf", b64(b"%PDF")), AttachmentIn("b.txt", b64(b"x")),
             limits=limits)
    assert caught.value.field == "attachments[1].filename"


@given(st.text(max_size=20), st.sampled_from(["exe", "EXE", "js"]), st.sampled_from(["", ".",
                                                                                   " ", ". "]))
def test_the_last_extension_is_what_windows_sees(stem: str, extension: str,
                                                 trailing: str) -> None:
    assert last_extension(f"{stem}.{extension}{trailing}") == f".{extension.lower()}"


# --- inline images --------------------------------------------------------------------------

def test_an_inline_image_keeps_its_content_id() -> None:
    planned = plan(AttachmentIn("logo.png", b64(b"\x89PNG"), "image/png", content_id="logo"),
                   html='<img src="cid:logo">')
    (entry,) = planned.content.attachments
    assert isinstance(entry, AttachmentRef) and entry.content_id == "logo"


@pytest.mark.parametrize(("attachments", "html", "message"), [
    ([AttachmentIn("a.png", "", "image/png", content_id="logo")], None, "needs an html body"),
    ([AttachmentIn("a.png", "", "image/png", content_id="lo go")], "<p>", "content_id must"),
    ([AttachmentIn("a.png", "", "image/png", content_id="x"),
      AttachmentIn("b.png", "", "image/png", content_id="x")], "<p>", "used twice"),
])
def test_bad_inline_images_are_refused(attachments: list[AttachmentIn], html: str | None,
                                       message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        plan(*attachments, html=html)
    assert caught.value.field is not None and caught.value.field.endswith(".content_id")


# --- files known by the edge ------------------------------------------------------------------

def test_an_upload_is_planned_from_what_the_edge_knows() -> None:
    info = FileInfo("ab" * 32, 50_000_000)
    limits = Limits(max_attachment_size=60_000_000, max_message_size=70_000_000)
    planned = plan(AttachmentIn("big.bin", upload_id="up_1"), files=[info], limits=limits)
    assert planned.content.attachments == (
        AttachmentRef("big.bin", "application/octet-stream", "ab" * 32, 50_000_000),)
    assert planned.blobs == (PlannedBlob("ab" * 32, 50_000_000),)
    assert planned.size > 50_000_000 * 4 // 3


def test_an_upload_without_the_edge_is_unknown() -> None:
    with pytest.raises(InputError) as caught:
        plan(AttachmentIn("a.bin", upload_id="up_nope"))
    assert caught.value.field == "attachments[0].upload_id"


# --- send as link ---------------------------------------------------------------------------

def links(threshold: int = 1000) -> LinkPolicy:
    return LinkPolicy(threshold, timedelta(days=7), "https://outbox.example/", KEY)


def test_a_file_over_the_threshold_becomes_a_signed_link() -> None:
    big, small = b"x" * 1001, b"y" * 1000
    planned = plan(AttachmentIn("big.iso", b64(big)), AttachmentIn("small.txt", b64(small)),
                   links=links(), limits=Limits(max_message_size=3000))
    big_entry, small_entry = planned.content.attachments
    assert isinstance(big_entry, AttachmentRef) and isinstance(small_entry, AttachmentRef)
    assert small_entry.link is None and big_entry.link is not None
    url = big_entry.link.url
    assert url.startswith("https://outbox.example/d/")
    ticket = read_link(KEY, url.rsplit("/", 1)[1], NOW)
    assert ticket == LinkTicket(hashlib.sha256(big).hexdigest(), 1001, "big.iso",
                                "application/octet-stream", NOW + timedelta(days=7))
    expires = NOW + timedelta(days=7)
    assert big_entry.link.expires_at == expires
    assert PlannedBlob(hashlib.sha256(big).hexdigest(), 1001, expires) in planned.blobs
    assert planned.size < 3000  # the big file does not travel


def test_an_inline_image_is_never_a_link() -> None:
    planned = plan(AttachmentIn("logo.png", b64(b"p" * 5000), "image/png", content_id="l"),
                   html="<img src='cid:l'>", links=links())
    (entry,) = planned.content.attachments
    assert isinstance(entry, AttachmentRef) and entry.link is None


def ticket(**changes: object) -> LinkTicket:
    values: dict[str, object] = {"sha256": "ab" * 32, "size": 10, "filename": "Résumé.pdf",
                                 "content_type": "application/pdf",
                                 "expires_at": NOW + timedelta(hours=1)}
    values.update(changes)
    return LinkTicket(**values)  # type: ignore[arg-type]


def test_a_link_reads_back_until_it_expires() -> None:
    token = sign_link(KEY, ticket())
    assert read_link(KEY, token, NOW) == ticket()
    with pytest.raises(LinkExpired, match="expired"):
        read_link(KEY, token, NOW + timedelta(hours=1))


@settings(max_examples=300)
@given(st.data())
def test_any_change_to_a_token_is_refused(data: st.DataObject) -> None:
    token = sign_link(KEY, ticket())
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from("ABCxyz019-_.="))
    tampered = token[:index] + replacement + token[index + 1:]
    if tampered != token:
        with pytest.raises(LinkInvalid):
            read_link(KEY, tampered, NOW)


def test_a_token_signed_with_another_key_is_refused() -> None:
    with pytest.raises(LinkInvalid):
        read_link(KEY, sign_link(b"other" * 8, ticket()), NOW)
    for junk in ("", ".", "abc", "abc.def", "%%%.***"):
        with pytest.raises(LinkInvalid):
            read_link(KEY, junk, NOW)
