"""core.inbound: a message as DATA carried it, read into the Submission the API builds;
and plan_envelope (the envelope given apart from the headers). Pure: no I/O."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core import inbound
from outbox.core.addresses import RecipientKind, plan_envelope
from outbox.core.compose import Limits, plan_message
from outbox.core.inbound import Envelope, message_id_of, read_message
from outbox.core.mime import build_message
from outbox.core.routing import RoutingTable
from outbox.errors import AttachmentBlocked, InvalidAddress

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ENVELOPE = Envelope("app@example.test", ("ann@example.test", "hidden@example.test"))
LIMITS = Limits(blocked_extensions=frozenset({".exe"}))


def raw(headers: str, body: str = "Hello\r\n") -> bytes:
    return (headers.replace("\n", "\r\n") + "\r\n" + body).encode()


def plan(submission):  # type: ignore[no-untyped-def]
    return plan_message(submission, limits=LIMITS, routing=RoutingTable((), "default"),
                        known_relays=["default"], now=NOW,
                        make_message_id=lambda domain: f"<gen@{domain}>")


def test_recipients_absent_from_the_headers_are_bcc_and_no_bcc_header_is_written() -> None:
    sub = read_message(raw("From: App <app@example.test>\nTo: ann@example.test\n"
                           "Bcc: hidden@example.test\nSubject: Hi\n"), ENVELOPE)
    planned = plan(sub)

    assert [(r.address, r.kind) for r in planned.recipients] == [
        ("ann@example.test", "to"), ("hidden@example.test", "bcc")]
    written = build_message(planned.content, planned.message_id)
    assert b"hidden@example.test" not in written and b"Bcc" not in written


def test_a_header_address_outside_the_envelope_stays_in_its_header_and_gets_nothing() -> None:
    """A client that split its recipients over two transactions keeps the To header."""
    sub = read_message(raw("From: app@example.test\nTo: ann@example.test, bob@example.test\n"
                           "Cc: carl@example.test\n"),
                       Envelope("app@example.test", ("bob@example.test",)))
    planned = plan(sub)

    assert [(r.address, r.kind) for r in planned.recipients] == [("bob@example.test", "to")]
    assert planned.content.to == ("ann@example.test", "bob@example.test")
    assert planned.content.cc == ("carl@example.test",)


def test_headers_are_read_as_written() -> None:
    sub = read_message(raw(
        "From: =?utf-8?q?J=C3=BCrgen?= <j@example.test>\n"
        'To: "Doe, John" <ann@example.test>, Team: hidden@example.test;\n'
        "Reply-To: help@example.test\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and more\n"
        "Message-ID: <abc.1@example.test>\nDate: Mon, 1 Jan 2029 00:00:00 +0000\n"
        "X-Mailer: test 1.0\nIn-Reply-To: <earlier@example.test>\nX-Twice: 1\nX-Twice: 2\n"
        "Received: from somewhere\nReturn-Path: <x@example.test>\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"), ENVELOPE)

    assert sub.sender == "Jürgen <j@example.test>"
    assert list(sub.to) == ['"Doe, John" <ann@example.test>', "hidden@example.test"]
    assert list(sub.reply_to) == ["help@example.test"]
    assert sub.subject == "Grüße and more"
    assert message_id_of(sub) == "<abc.1@example.test>"
    assert sub.headers == {"Message-ID": "<abc.1@example.test>", "X-Mailer": "test 1.0",
                           "In-Reply-To": "<earlier@example.test>", "X-Twice": "1"}
    assert plan(sub).message_id == "<abc.1@example.test>"


def test_without_a_from_header_the_envelope_sender_is_the_sender() -> None:
    sub = read_message(raw("To: ann@example.test\n"), ENVELOPE)
    assert sub.sender == "app@example.test"
    assert message_id_of(sub) is None
    assert plan(sub).message_id == "<gen@example.test>"


def test_a_from_header_of_two_mailboxes_is_refused() -> None:
    with pytest.raises(InvalidAddress) as caught:
        read_message(raw("From: a@example.test, b@example.test\n"), ENVELOPE)
    assert caught.value.field == "from"


def mime(*, html: bool = True, attach: tuple[str, bytes] | None = None,
         inline: bool = False, forwarded: bool = False) -> bytes:
    message = EmailMessage()
    message["From"] = "app@example.test"
    message["To"] = "ann@example.test"
    message["Subject"] = "MIME"
    message.set_content("plain body ✓\n")
    if html:
        message.add_alternative('<p>html <img src="cid:logo@x"></p>\n', subtype="html")
    if inline:
        message.get_payload()[1].add_related(b"\x89PNG....", "image", "png", cid="<logo@x>")
    if attach:
        message.add_attachment(attach[1], maintype="application", subtype="octet-stream",
                               filename=attach[0])
    if forwarded:
        inner = EmailMessage()
        inner["Subject"] = "inner"
        inner.set_content("inner body\n")
        message.add_attachment(inner)
    return message.as_bytes(policy=SMTP)


def test_alternative_bodies_attachments_inline_images_and_attached_messages() -> None:
    sub = read_message(mime(attach=("report.pdf", b"%PDF-1.4 data"), inline=True,
                            forwarded=True), ENVELOPE)

    assert sub.text == "plain body ✓\n"
    assert sub.html == '<p>html <img src="cid:logo@x"></p>\n'
    found = [(a.filename, a.content_type, a.content_id) for a in sub.attachments]
    assert found == [("image-1.png", "image/png", "logo@x"),
                     ("report.pdf", "application/octet-stream", None),
                     ("attachment-3.eml", "message/rfc822", None)]
    assert base64.b64decode(sub.attachments[1].content_base64) == b"%PDF-1.4 data"
    assert b"inner body" in base64.b64decode(sub.attachments[2].content_base64)
    planned = plan(sub)
    assert [a.filename for a in planned.content.attachments] == [
        "image-1.png", "report.pdf", "attachment-3.eml"]


def test_a_message_of_attachments_only_has_an_empty_text_body() -> None:
    message = EmailMessage()
    message["From"] = "app@example.test"
    message.add_attachment(b"data", maintype="application", subtype="pdf", filename="a.pdf")
    sub = read_message(message.as_bytes(policy=SMTP), ENVELOPE)
    assert (sub.text, sub.html) == ("", None)
    assert [a.filename for a in sub.attachments] == ["a.pdf"]


def test_a_blocked_attachment_is_refused_naming_the_file() -> None:
    sub = read_message(mime(html=False, attach=("invoice.pdf.exe", b"not really")), ENVELOPE)
    with pytest.raises(AttachmentBlocked) as caught:
        plan(sub)
    assert "invoice.pdf.exe" in caught.value.message


def test_an_unknown_charset_still_reads() -> None:
    sub = read_message(raw("From: app@example.test\n"
                           "Content-Type: text/plain; charset=x-no-such-charset\n",
                           "café\r\n"), ENVELOPE)
    assert sub.text is not None and sub.text.startswith("caf")


def test_plan_envelope_kinds_and_duplicates() -> None:
    """The domain's case does not make another mailbox; the first occurrence wins."""
    plan_ = plan_envelope(["a@x.test", "b@X.test"], "c@x.test",
                          ["c@x.test", "b@x.test", "d@x.test", "d@X.TEST"])
    assert [(r.address.addr_spec, r.kind) for r in plan_.envelope] == [
        ("c@x.test", RecipientKind.CC), ("b@x.test", RecipientKind.TO),
        ("d@x.test", RecipientKind.BCC)]
    assert [a.formatted() for a in plan_.to] == ["a@x.test", "b@x.test"]


@pytest.mark.parametrize("envelope", [[], ["not an address"]])
def test_plan_envelope_refuses_an_empty_or_bad_envelope(envelope: list[str]) -> None:
    with pytest.raises(InvalidAddress) as caught:
        plan_envelope("a@x.test", None, envelope)
    assert caught.value.field is not None and caught.value.field.startswith("envelope")


def test_short_header_values_are_parsed_once_and_long_ones_each_time() -> None:
    """The parser's registry keeps the header objects of short values (a message's
    Content-Type is looked up nine times); a long value, which a client chooses, is
    never kept."""
    registry = inbound._ParsedOnce()
    short = registry("Content-Type", "text/plain; charset=utf-8")
    assert registry("Content-Type", "text/plain; charset=utf-8") is short
    assert short.content_type == "text/plain" and short.params["charset"] == "utf-8"
    assert registry("Content-Type", "text/html") is not short
    many = ", ".join(f"r{n}@example.test" for n in range(20))
    assert len(many) > inbound.CACHED_VALUE_CHARS
    first = registry("To", many)
    assert registry("To", many) is not first and first == registry("To", many)
    assert len(first.addresses) == 20


_ATEXT = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~.-", min_size=1, max_size=12)


@given(local=_ATEXT, domain=_ATEXT, blanks=st.sampled_from(["", " ", "  ", "\t"]))
def test_a_plain_message_id_reads_as_the_header_parser_reads_it(
        local: str, domain: str, blanks: str) -> None:
    """`_kept_headers` reads `<local@domain>` of atext and dots without the stdlib's
    parser (issue 15); what it keeps is what the parser gives, dots anywhere included."""
    raw = f"{blanks}<{local}@{domain}>{blanks}"
    message = inbound._PARSER.parsebytes(f"Message-ID: {raw}\r\n\r\nbody\r\n".encode())
    (name, stored), = message.raw_items()
    by_the_parser = str(message.policy.header_fetch_parse(name, stored)).strip()

    assert inbound._kept_headers(message)["Message-ID"] == by_the_parser


@pytest.mark.parametrize("value", ['<"quoted local"@x.test>', "<a@[127.0.0.1]>",
                                   "<a@x.test> (a comment)", "<a@x.test>\r\n <b@x.test>",
                                   "a@x.test", "<a @x.test>"])
def test_other_message_ids_go_to_the_parser(value: str) -> None:
    message = inbound._PARSER.parsebytes(f"Message-ID: {value}\r\n\r\nbody\r\n".encode())
    (name, stored), = message.raw_items()

    assert inbound._kept_headers(message)["Message-ID"] == str(
        message.policy.header_fetch_parse(name, stored)).strip()
    assert not inbound._PLAIN_MESSAGE_ID.fullmatch(stored.strip())
