"""plan_message: every check of a Submission, each failure naming its field; routing."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.compose import (
    AttachmentIn,
    Limits,
    PlannedBlob,
    PlannedMessage,
    PlannedRecipient,
    Submission,
    plan_message,
)
from outbox.core.content import AttachmentRef, MessageContent
from outbox.core.mime import RESERVED_HEADERS, build_message
from outbox.core.routing import Route, RoutingTable, default_relay_name
from outbox.errors import (
    AttachmentBlocked,
    HeaderInjection,
    InputError,
    InvalidAddress,
    MessageTooLarge,
)

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
BLOCKED = frozenset({".exe", ".bat", ".js", ".scr"})
LIMITS = Limits(max_message_size=1_000_000, max_attachment_size=100_000,
                blocked_extensions=BLOCKED)
ROUTING = RoutingTable(
    routes=(Route("*.internal.example", "internal"), Route("*.example", "second"),
            Route("partner.test", "partner")),
    default_relay="default",
)
RELAYS = ("default", "internal", "second", "partner")
HELLO = base64.b64encode(b"hello").decode()
HELLO_SHA256 = hashlib.sha256(b"hello").hexdigest()

# Everything str.splitlines() breaks a line at, plus NUL: none may reach a header.
LINE_BREAKS = ["\r", "\n", "\r\n", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85",
               "\u2028", "\u2029"]


class MessageIds:
    """A make_message_id that records the domains it was asked for."""

    def __init__(self) -> None:
        self.domains: list[str] = []

    def __call__(self, domain: str) -> str:
        self.domains.append(domain)
        return f"<generated.{len(self.domains)}@{domain}>"


def submission(**overrides) -> Submission:
    values = {"sender": "Me <me@example.com>", "to": ["Bob <bob@example.org>"],
              "subject": "Hello", "text": "Hi Bob"}
    values.update(overrides)
    return Submission(**values)


def plan(sub: Submission | None = None, *, limits: Limits = LIMITS,
         routing: RoutingTable = ROUTING, relays=RELAYS, ids=None, **overrides) -> PlannedMessage:
    return plan_message(sub or submission(**overrides), limits=limits, routing=routing,
                        known_relays=relays, now=NOW, make_message_id=ids or MessageIds())


def refused(error: type[InputError], **overrides) -> InputError:
    with pytest.raises(error) as info:
        plan(**overrides)
    assert "\n" not in info.value.message
    return info.value


def attachment(filename: str = "notes.txt", data: bytes = b"hello",
               content_type: str = "text/plain") -> AttachmentIn:
    return AttachmentIn(filename, base64.b64encode(data).decode(), content_type)


# --- the plan --------------------------------------------------------------------------------

def test_a_valid_submission_is_planned():
    ids = MessageIds()
    planned = plan(ids=ids, cc="carol@example.net", bcc=["dave@shop.example"],
                   reply_to="replies@example.com", html="<p>Hi Bob</p>",
                   headers={"X-Campaign": "spring"}, attachments=[attachment()])
    assert planned.sender == "me@example.com"
    assert planned.message_id == "<generated.1@example.com>"
    assert ids.domains == ["example.com"]
    assert planned.content == MessageContent(
        from_="Me <me@example.com>",
        to=("Bob <bob@example.org>",),
        cc=("carol@example.net",),
        reply_to=("replies@example.com",),
        subject="Hello",
        text="Hi Bob",
        html="<p>Hi Bob</p>",
        headers=(("X-Campaign", "spring"),),
        date=format_datetime(NOW),
        attachments=(AttachmentRef("notes.txt", "text/plain", HELLO_SHA256, 5),),
    )
    assert planned.recipients == (
        PlannedRecipient("bob@example.org", "to", "default"),
        PlannedRecipient("carol@example.net", "cc", "default"),
        PlannedRecipient("dave@shop.example", "bcc", "second"),
    )
    assert planned.blobs == (PlannedBlob(HELLO_SHA256, 5),)
    assert planned.size == len(build_message(planned.content, planned.message_id,
                                             {HELLO_SHA256: b"hello"}))


def test_bcc_is_in_the_envelope_only():
    planned = plan(bcc="hidden@example.org")
    assert "hidden@example.org" not in str(planned.content)
    assert ("hidden@example.org", "bcc") in {(r.address, r.kind) for r in planned.recipients}


def test_a_recipient_in_to_cc_and_bcc_is_sent_to_once():
    planned = plan(to=["bob@example.org"], cc=["bob@EXAMPLE.org"], bcc="bob@example.org")
    assert [r.address for r in planned.recipients] == ["bob@example.org"]
    assert planned.content.cc == ()


def test_message_id_domain_is_the_senders_ascii_domain():
    ids = MessageIds()
    plan(ids=ids, sender="me@bücher.example")
    assert ids.domains == ["xn--bcher-kva.example"]


@pytest.mark.parametrize(("field", "value", "where"), [
    ("sender", "not an address", "from"),
    ("sender", "a@example.com, b@example.com", "from"),
    ("to", ["ok@example.com", "bad"], "to[1]"),
    ("cc", ["bad"], "cc[0]"),
    ("bcc", ["bad"], "bcc[0]"),
    ("to", [], "to"),
])
def test_bad_addresses_name_their_field(field, value, where):
    assert refused(InvalidAddress, **{field: value}).field == where


def test_bad_reply_to_names_its_field():
    assert refused(InvalidAddress, reply_to=["bad"]).field.startswith("reply_to")


# --- subject and headers ---------------------------------------------------------------------

@pytest.mark.parametrize("brk", LINE_BREAKS)
def test_a_line_break_in_the_subject_is_header_injection(brk):
    error = refused(HeaderInjection, subject=f"Hello{brk}Bcc: evil@example.com")
    assert error.field == "subject"
    assert error.code == "header_injection"
    assert error.status == 422


@pytest.mark.parametrize("brk", LINE_BREAKS)
def test_a_line_break_in_a_header_value_is_header_injection(brk):
    error = refused(HeaderInjection, headers={"X-Custom": f"a{brk}Bcc: evil@example.com"})
    assert error.field == "headers.X-Custom"


@pytest.mark.parametrize("name", ["X-Evil\r\nBcc", "X-Evil\n", "\rX-Evil", "X-Evil\x00"])
def test_a_line_break_in_a_header_name_is_header_injection(name):
    error = refused(HeaderInjection, headers={name: "x"})
    assert error.field == f"headers.{name}"
    assert error.field.startswith("headers.")
    assert "\n" not in error.message and "\r" not in error.message


@pytest.mark.parametrize("name", ["X Custom", "X:Custom", "", "Ünicode", "X-Tab\t"])
def test_an_invalid_header_name_is_refused(name):
    error = refused(InputError, headers={name: "x"})
    assert not isinstance(error, HeaderInjection)
    assert error.field == f"headers.{name}"


@pytest.mark.parametrize(("name", "field"), [
    ("To", "to"), ("BCC", "bcc"), ("Bcc", "bcc"), ("cc", "cc"), ("From", "from"),
    ("Subject", "subject"), ("Reply-To", "reply_to")])
def test_a_header_with_a_field_of_its_own_names_that_field(name, field):
    error = refused(InputError, headers={name: "someone@example.com"})
    assert error.field == f"headers.{name}"
    assert f"with the field '{field}'" in error.message


@pytest.mark.parametrize("name", [
    *sorted(RESERVED_HEADERS - {"message-id", "from", "to", "cc", "bcc", "subject", "reply-to"}),
    "Date", "MIME-Version", "Content-Type", "content-transfer-encoding"])
def test_a_header_outbox_writes_is_refused_saying_so(name):
    # These have no field: the old message sent the user to a field that does not exist.
    error = refused(InputError, headers={name: "x"})
    assert error.field == f"headers.{name}"
    assert error.message == f"Outbox writes '{name}' itself: leave it out of headers"


def test_a_nul_in_a_header_is_named_as_what_it_is():
    error = refused(HeaderInjection, headers={"X-A": "v\x00"})
    assert "'\\x00', a line break or NUL" in error.message


def test_custom_headers_are_kept_in_order():
    planned = plan(headers={"X-B": "2", "X-A": "1", "List-Unsubscribe": "<mailto:u@example.com>"})
    assert planned.content.headers == (
        ("X-B", "2"), ("X-A", "1"), ("List-Unsubscribe", "<mailto:u@example.com>"))


def test_non_ascii_subject_and_header_values_are_fine():
    planned = plan(subject="Grüße · 你好", headers={"X-Note": "café"})
    assert planned.content.subject == "Grüße · 你好"


# --- Message-ID ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Message-ID", "message-id", "MESSAGE-ID", "Message-Id"])
def test_a_client_message_id_is_honoured(name):
    ids = MessageIds()
    planned = plan(ids=ids, headers={name: "  <order-42.confirm@shop.example>  "})
    assert planned.message_id == "<order-42.confirm@shop.example>"
    assert ids.domains == []
    assert planned.content.headers == ()


@pytest.mark.parametrize("value", [
    "order-42@shop.example", "<order-42>", "<a@b@c>", "<a b@c>", "<>", "<@shop.example>",
    "<a@>", "<é@shop.example>", "<a@shop.example> trailing", "<<a@b>>", "<a\x01@b>",
])
def test_a_bad_message_id_is_refused(value):
    error = refused(InputError, headers={"Message-ID": value})
    assert error.field == "headers.Message-ID"


# --- body ------------------------------------------------------------------------------------

def test_no_body_is_refused_naming_text():
    error = refused(InputError, text=None, html=None)
    assert error.field == "text"


@pytest.mark.parametrize(("text", "html"), [("", None), (None, "<p>hi</p>"), ("hi", "<p>hi</p>")])
def test_text_html_or_both_are_a_body(text, html):
    assert plan(text=text, html=html).content.text == text


# --- attachments -----------------------------------------------------------------------------

@pytest.mark.parametrize("filename", [
    "setup.exe", "SETUP.EXE", "Setup.Exe", "invoice.pdf.exe", "invoice.exe.", "invoice.exe...",
    "invoice.exe ", "invoice.exe. . ", "invoice.pdf.exe.", "run.bat", "app.js", "screen.scr",
    ".exe",
])
def test_blocked_extensions_and_double_extensions_are_refused(filename):
    error = refused(AttachmentBlocked, attachments=[attachment(filename)])
    assert error.field == "attachments[0].filename"
    assert error.code == "attachment_blocked"
    assert error.status == 422
    assert "limits.blocked_extensions" in error.message


@pytest.mark.parametrize("filename", [
    "invoice.pdf", "invoice.exe.pdf", "exe", "notes.txt", "archive.tar.gz", "my.executable",
    "json.jsx", "résumé.pdf", "no-extension",
])
def test_other_files_are_accepted(filename):
    planned = plan(attachments=[attachment(filename)])
    assert planned.content.attachments[0].filename == filename


def test_the_failing_attachment_is_named_by_its_index():
    error = refused(AttachmentBlocked, attachments=[attachment("a.txt"), attachment("b.exe")])
    assert error.field == "attachments[1].filename"


@pytest.mark.parametrize("configured", [frozenset({"exe"}), frozenset({".EXE"}),
                                        frozenset({"EXE"})])
def test_blocked_extensions_match_however_they_were_written(configured):
    limits = Limits(blocked_extensions=configured)
    with pytest.raises(AttachmentBlocked):
        plan(limits=limits, attachments=[attachment("setup.exe")])


@pytest.mark.parametrize("filename", ["", "../etc/passwd", "dir/file.txt", "C:\\boot.ini",
                                      "a\r\nb.txt", "a\nb.txt", "a\x00.txt"])
def test_a_filename_with_a_path_or_line_break_is_refused(filename):
    error = refused(InputError, attachments=[attachment(filename)])
    assert error.field == "attachments[0].filename"


@pytest.mark.parametrize("content", ["not base64!!", "aGVsbG8", "====", "é", "aGVs*bG8="])
def test_bad_base64_is_refused(content):
    error = refused(InputError, attachments=[AttachmentIn("notes.txt", content)])
    assert error.field == "attachments[0].content_base64"


@pytest.mark.parametrize("content", ["aGVs bG8=", "aGVsbG8=\n", "aGVs\r\nbG8=\r\n"])
def test_line_wrapped_base64_is_accepted(content):
    planned = plan(attachments=[AttachmentIn("notes.txt", content)])
    assert planned.content.attachments[0].filename == "notes.txt"


@pytest.mark.parametrize("content_type", [
    "text/plain\r\nBcc: evil@example.com", "text/plain\n", "te xt/plain", "text/pl ain",
    "text/plain; charset", "text/plain; a=b c", "text/plain; name=x.txt", "text/plain;;",
    "text/plain; charset=\"caf\u00e9\"", "text", "/plain", "text/", "tëxt/plain",
    "multipart/mixed", "Multipart/Alternative",
])
def test_a_bad_content_type_is_refused(content_type):
    error = refused(InputError, attachments=[attachment(content_type=content_type)])
    assert error.field == "attachments[0].content_type"


@pytest.mark.parametrize("content_type", [
    "application/pdf", "image/png", "application/vnd.openxmlformats-officedocument"
    ".wordprocessingml.document", "application/octet-stream", "TEXT/PLAIN", "image/svg+xml",
    "application/x-www-form-urlencoded", "text/calendar; method=REQUEST; charset=utf-8",
    'text/plain; format="flowed"',
])
def test_good_content_types_are_accepted(content_type):
    planned = plan(attachments=[attachment(content_type=content_type)])
    assert planned.content.attachments[0].content_type == content_type


def test_an_empty_attachment_is_fine():
    assert plan(attachments=[attachment(data=b"")]).size > 0


def test_an_attachment_at_the_limit_is_fine_and_one_byte_more_is_too_large():
    limits = Limits(max_attachment_size=10, blocked_extensions=BLOCKED)
    plan(limits=limits, attachments=[attachment(data=b"x" * 10)])
    with pytest.raises(MessageTooLarge) as info:
        plan(limits=limits, attachments=[attachment(data=b"x" * 11)])
    assert info.value.field == "attachments[0]"
    assert info.value.status == 413
    assert "limits.max_attachment_size" in info.value.message


def test_the_message_size_limit_is_on_the_encoded_message():
    planned = plan(attachments=[attachment(data=bytes(range(256)) * 40)])
    exact = Limits(max_message_size=planned.size, max_attachment_size=100_000)
    assert plan(limits=exact, attachments=[attachment(data=bytes(range(256)) * 40)]).size == (
        planned.size)
    over = Limits(max_message_size=planned.size - 1, max_attachment_size=100_000)
    with pytest.raises(MessageTooLarge) as info:
        plan(limits=over, attachments=[attachment(data=bytes(range(256)) * 40)])
    assert "limits.max_message_size" in info.value.message
    assert info.value.status == 413
    # base64 makes it bigger on the wire than the 10,240 bytes given
    assert planned.size > 10_240 * 4 // 3


def test_a_large_body_counts_against_the_message_size():
    with pytest.raises(MessageTooLarge):
        plan(limits=Limits(max_message_size=5_000), text="x" * 10_000)


# --- relay and routes ------------------------------------------------------------------------

def test_an_unknown_requested_relay_is_refused_naming_relay():
    error = refused(InputError, relay="nowhere")
    assert error.field == "relay"
    assert "nowhere" in error.message
    assert "default" in error.message


def test_a_requested_relay_carries_every_recipient():
    planned = plan(to=["a@x.internal.example", "b@example.org"], relay="partner")
    assert {r.relay for r in planned.recipients} == {"partner"}


def test_no_relay_configured_is_refused_naming_relay():
    error = refused(InputError, routing=RoutingTable((), None), relays=())
    assert error.field == "relay"
    assert "[[relays]]" in error.message


@pytest.mark.parametrize(("address", "relay"), [
    ("a@mx.internal.example", "internal"),
    ("a@deep.mx.internal.example", "internal"),
    ("a@MX.Internal.EXAMPLE", "internal"),
    ("a@internal.example", "second"),  # the glob needs a label before .internal.example
    ("a@shop.example", "second"),
    ("a@partner.test", "partner"),
    ("a@sub.partner.test", "default"),
    ("a@example.org", "default"),
])
def test_routes_first_match_wins_by_recipient_domain_glob(address, relay):
    (recipient,) = plan(to=[address]).recipients
    assert recipient.relay == relay


def test_each_recipient_is_routed_on_its_own():
    planned = plan(to=["a@mx.internal.example"], cc=["b@example.org"], bcc=["c@shop.example"])
    assert [(r.address, r.relay) for r in planned.recipients] == [
        ("a@mx.internal.example", "internal"), ("b@example.org", "default"),
        ("c@shop.example", "second")]


def test_routes_match_the_ascii_form_of_an_international_domain():
    routing = RoutingTable((Route("*.xn--bcher-kva.example", "idn"),), "default")
    (recipient,) = plan(routing=routing, relays=("default", "idn"),
                        to=["a@mail.bücher.example"]).recipients
    assert recipient == PlannedRecipient("a@mail.xn--bcher-kva.example", "to", "idn")


@pytest.mark.parametrize(("domain", "requested", "relay"), [
    ("a.internal.example", None, "internal"),
    ("A.INTERNAL.EXAMPLE", None, "internal"),
    ("a.internal.example", "partner", "partner"),
    ("elsewhere.org", None, "default"),
    ("x.example", None, "second"),
    ("partner.test", "", "partner"),
])
def test_relay_for(domain, requested, relay):
    assert ROUTING.relay_for(domain, requested) == relay


def test_relay_for_without_default_or_match_is_none():
    assert RoutingTable((Route("*.a", "r"),), None).relay_for("b") is None


def test_route_globs_are_case_insensitive():
    assert RoutingTable((Route("*.Internal.Example", "r"),), None).relay_for("x.internal.example")


@pytest.mark.parametrize(("names", "default"), [
    (["a", "default", "b"], "default"), (["a", "b"], "a"), ([], None)])
def test_default_relay_name(names, default):
    assert default_relay_name(names) == default


# --- properties ------------------------------------------------------------------------------

_SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=60)


@given(_SAFE_TEXT, st.sampled_from(LINE_BREAKS), _SAFE_TEXT)
def test_any_line_break_anywhere_in_the_subject_is_injection(before, brk, after):
    with pytest.raises(HeaderInjection):
        plan(subject=before + brk + after)


@given(_SAFE_TEXT)
def test_any_subject_without_line_breaks_is_planned(subject):
    assert plan(subject=subject).content.subject == subject


@given(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True), _SAFE_TEXT)
def test_any_custom_header_without_line_breaks_is_planned(name, value):
    if name.lower() in RESERVED_HEADERS:
        return
    assert plan(headers={name: value}).content.headers == ((name, value),)


@given(st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,4}){0,2}", fullmatch=True),
       st.sampled_from(sorted(BLOCKED)), st.sampled_from(["", ".", "..", " ", ". ", " ."]))
def test_a_blocked_extension_last_is_always_refused(stem, extension, trailing):
    with pytest.raises(AttachmentBlocked):
        plan(attachments=[attachment(f"{stem}{extension.upper()}{trailing}")])
