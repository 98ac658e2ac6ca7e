"""Mail read from a client and rebuilt keeps what its recipients' clients need: an
attached message goes 7bit as it is (RFC 2046 5.2.1), a calendar invite keeps its
`method`, an inline image in multipart/related keeps its Content-ID, and a signed or
encrypted part inside a message Outbox rebuilds is refused rather than broken. Pure
core: no I/O."""

from __future__ import annotations

import base64
import email
import hashlib
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import SMTP
from typing import cast

import pytest

from outbox.core.compose import Limits, PlannedMessage, Submission, plan_message
from outbox.core.content import AttachmentRef, EmbeddedFile, MessageContent
from outbox.core.inbound import Envelope, read_message
from outbox.core.mime import build_message, plan_mime
from outbox.core.mime_types import SevenBitLines, is_seven_bit, parse_content_type
from outbox.core.routing import RoutingTable
from outbox.errors import InputError

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ENVELOPE = Envelope("app@example.test", ("ann@example.test",))
MESSAGE_ID = "<m1@example.test>"
INNER = (b"From: Bob <bob@example.test>\r\nTo: ann@example.test\r\nSubject: original\r\n"
         b"Message-ID: <inner@example.test>\r\n\r\nthe original text\r\n.dot line\r\n")


def plan(submission: Submission) -> PlannedMessage:
    return plan_message(submission, limits=Limits(), routing=RoutingTable((), "default"),
                        known_relays=["default"], now=NOW,
                        make_message_id=lambda domain: f"<gen@{domain}>")


def content(*attachments: AttachmentRef | EmbeddedFile, html: str | None = None) -> MessageContent:
    return MessageContent(from_="app@example.test", date="Wed, 01 May 2024 12:00:00 +0000",
                          to=("ann@example.test",), text="see attached", html=html,
                          attachments=attachments)


def ref(data: bytes, content_type: str, filename: str = "fwd.eml") -> AttachmentRef:
    return AttachmentRef(filename, content_type, hashlib.sha256(data).hexdigest(), len(data))


def built(data: bytes, item: AttachmentRef | EmbeddedFile, **kw: str) -> EmailMessage:
    raw = build_message(content(item, **kw), MESSAGE_ID, {hashlib.sha256(data).hexdigest(): data})
    assert len(raw) == plan_mime(content(item, **kw), MESSAGE_ID).size  # planned size is exact
    return cast(EmailMessage, email.message_from_bytes(raw, policy=SMTP))


def part_of(message: EmailMessage, content_type: str) -> Message:
    (found,) = [p for p in message.walk() if p.get_content_type() == content_type]
    return found


# --- 1. attached messages ------------------------------------------------------------------

@pytest.mark.parametrize(("data", "seven_bit"), [
    (INNER, True),
    (b"", True),
    (b"a" * 998 + b"\r\nb\r\n", True),
    (b"a" * 999 + b"\r\n", False),
    ("Subject: caf\u00e9\r\n\r\nx\r\n".encode(), False),  # 8-bit: Outbox never sends 8bit
    (b"Subject: a\r\n\r\nnul \0 here\r\n", False),
    (b"Subject: a\r\n\r\nbare\rcr\r\n", False),
    (b"Subject: a\n\nbare lf\n", False),
    (b"Subject: a\r\n\r\n--=_ob_0123456789abcdef0123456789ab\r\n", False),  # ends our part
])
def test_seven_bit_lines_are_judged_the_same_whole_or_in_chunks(data: bytes,
                                                                 seven_bit: bool) -> None:
    assert is_seven_bit(data) is seven_bit
    for cut in range(len(data) + 1):  # a CRLF split between chunks is still one line end
        check = SevenBitLines()
        check.feed(data[:cut])
        check.feed(data[cut:])
        assert check.finish() is seven_bit, cut


def test_a_stored_attached_message_goes_as_it_is_in_7bit() -> None:
    message = built(INNER, ref(INNER, "message/rfc822"))
    part = part_of(message, "message/rfc822")
    assert part["Content-Transfer-Encoding"] == "7bit"
    assert part.get_filename() == "fwd.eml"
    assert part.get_payload(0).as_bytes(policy=SMTP) == INNER  # type: ignore[union-attr]


@pytest.mark.parametrize("data", [b"Subject: a\r\n\r\nnul \0\r\n",
                                  "Subject: \u00e9\r\n\r\nx\r\n".encode()])
def test_embedded_message_that_cannot_go_7bit_goes_as_a_file(data: bytes) -> None:
    embedded = EmbeddedFile("fwd.eml", "message/rfc822", base64.b64encode(data).decode())
    part = part_of(built(data, embedded), "application/octet-stream")
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_filename() == "fwd.eml" and part.get_payload(decode=True) == data


@pytest.mark.parametrize(("data", "sent_as"), [
    (INNER, "message/rfc822"),
    ("Subject: caf\u00e9\r\n\r\nx\r\n".encode(), "application/octet-stream"),
    (b"Subject: a\n\nunix line ends\n", "application/octet-stream"),
])
def test_submit_stores_an_attached_message_as_the_type_it_can_go_as(data: bytes,
                                                                     sent_as: str) -> None:
    from outbox.core.attachments import AttachmentIn

    sub = Submission("app@example.test", to="ann@example.test", text="fwd",
                     attachments=[AttachmentIn("fwd.eml", base64.b64encode(data).decode(),
                                               "message/rfc822")])
    (stored,) = plan(sub).content.attachments
    assert stored.content_type == sent_as


# --- 2. content type parameters ------------------------------------------------------------

INVITE = b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
PDF = b"%PDF-1.4 not really"


def built_with(items: list[tuple[bytes, AttachmentRef | EmbeddedFile]], **kw: str
               ) -> EmailMessage:
    mail = content(*(item for _, item in items), **kw)
    raw = build_message(mail, MESSAGE_ID,
                        {hashlib.sha256(data).hexdigest(): data for data, _ in items})
    assert len(raw) == plan_mime(mail, MESSAGE_ID).size  # planned size is exact
    return cast(EmailMessage, email.message_from_bytes(raw, policy=SMTP))


def shape(part: Message) -> object:
    """The MIME tree as nested (type, [children]) pairs, leaves by type alone."""
    if not part.is_multipart():
        return part.get_content_type()
    return (part.get_content_type(), [shape(child) for child in cast(list[Message],
                                                                     part.get_payload())])


def test_a_calendar_invitation_goes_as_the_last_alternative_of_the_body() -> None:
    """As Outlook and Google send invites (iMIP, RFC 6047): clients then show the
    invitation with its answers, where an .ics among the files is only a file."""
    message = built_with([
        (INVITE, ref(INVITE, "text/calendar; method=REQUEST; charset=utf-8", "invite.ics")),
        (PDF, ref(PDF, "application/pdf", "agenda.pdf"))], html="<p>see attached</p>")
    assert shape(message) == ("multipart/mixed", [
        ("multipart/alternative", ["text/plain", "text/html", "text/calendar"]),
        "application/pdf"])
    part = part_of(message, "text/calendar")
    assert part.get_param("method") == "REQUEST" and part.get_param("charset") == "utf-8"
    assert part.get_param("name") is None and part["Content-Disposition"] is None
    assert part.get_payload(decode=True) == INVITE


def test_an_invitation_held_in_the_content_and_a_text_body_alone() -> None:
    embedded = EmbeddedFile("invite.ics", "text/calendar; method=CANCEL",
                            base64.b64encode(INVITE).decode())
    message = built_with([(INVITE, embedded)])
    assert shape(message) == ("multipart/alternative", ["text/plain", "text/calendar"])
    part = part_of(message, "text/calendar")
    assert part.get_param("method") == "CANCEL" and part.get_payload(decode=True) == INVITE


def test_an_invitation_follows_the_html_with_its_inline_images() -> None:
    logo = b"\x89PNG logo"
    image = AttachmentRef("logo.png", "image/png", hashlib.sha256(logo).hexdigest(), len(logo),
                          content_id="logo@example.test")
    message = built_with([(logo, image), (INVITE, ref(INVITE, "text/calendar; method=REQUEST",
                                                      "invite.ics"))],
                         html='<img src="cid:logo@example.test">')
    assert shape(message) == ("multipart/alternative", [
        "text/plain", ("multipart/related", ["text/html", "image/png"]), "text/calendar"])


@pytest.mark.parametrize("second_type", [
    "text/calendar; method=REQUEST",  # one invitation an alternative; another is a file
    "text/calendar",  # a calendar without a method is a file to import, not an invitation
])
def test_other_calendars_stay_files_with_their_names(second_type: str) -> None:
    other = INVITE.replace(b"REQUEST", b"PUBLISH")
    message = built_with([
        (INVITE, ref(INVITE, "text/calendar; method=REQUEST", "invite.ics")),
        (other, ref(other, second_type, "holidays.ics"))])
    assert shape(message) == ("multipart/mixed", [
        ("multipart/alternative", ["text/plain", "text/calendar"]), "text/calendar"])
    attached = cast(list[Message], message.get_payload())[1]
    assert attached.get_filename() == "holidays.ics"
    assert attached.get_param("name") == "holidays.ics"
    assert attached.get_payload(decode=True) == other


def test_a_calendar_without_a_method_is_attached_as_before() -> None:
    message = built_with([(INVITE, ref(INVITE, "text/calendar; charset=utf-8", "cal.ics"))])
    assert shape(message) == ("multipart/mixed", ["text/plain", "text/calendar"])
    assert part_of(message, "text/calendar").get_filename() == "cal.ics"


@pytest.mark.parametrize(("value", "expected"), [
    ("text/calendar; method=REQUEST", ("text/calendar", (("method", "REQUEST"),))),
    ('text/plain; Format="flowed"; charset=utf-8',
     ("text/plain", (("format", "flowed"), ("charset", "utf-8")))),
    ("application/pdf", ("application/pdf", ())),
])
def test_parameters_are_read_in_order(value: str, expected: tuple[str, tuple[object, ...]]) -> None:
    assert parse_content_type(value, "content_type") == expected


@pytest.mark.parametrize("value", ["text/plain; charset=utf-8\r\nBcc: x@example.test",
                                   "text/plain; charset", "text/plain; a=b; a=c",
                                   "text/plain; a=b c"])
def test_malformed_parameters_are_refused_naming_the_field(value: str) -> None:
    with pytest.raises(InputError) as info:
        parse_content_type(value, "attachments[0].content_type")
    assert info.value.field == "attachments[0].content_type"
    assert "\n" not in info.value.message


def invite_in_alternative() -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "app@example.test", "ann@example.test", "Meeting")
    message.set_content("You are invited")
    message.add_alternative("<p>You are invited</p>", subtype="html")
    message.add_alternative("BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n",
                            subtype="calendar", params={"method": "REQUEST"})
    return message.as_bytes(policy=SMTP)


def test_a_calendar_alternative_is_kept_as_an_invite_with_its_method() -> None:
    sub = read_message(invite_in_alternative(), ENVELOPE)
    (invite,) = sub.attachments
    assert invite.filename == "invite-1.ics"
    assert ("method", "REQUEST") in parse_content_type(invite.content_type, "t")[1]
    sent = email.message_from_bytes(build_message(plan(sub).content, MESSAGE_ID, {
        hashlib.sha256(base64.b64decode(invite.content_base64)).hexdigest():
            base64.b64decode(invite.content_base64)}), policy=SMTP)
    assert part_of(cast(EmailMessage, sent), "text/calendar").get_param("method") == "REQUEST"
    assert shape(sent) == ("multipart/alternative", ["text/plain", "text/html", "text/calendar"])


# --- 3. inline images in multipart/related ------------------------------------------------

def related_message(html: str) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "app@example.test", "ann@example.test", "Logo")
    message.set_content("text")
    message.add_alternative(html, subtype="html")
    html_part = cast(EmailMessage, message.get_payload()[1])  # type: ignore[index]
    # add_related(filename=...) writes Content-Disposition: attachment
    html_part.add_related(b"\x89PNG\r\n\x1a\nlogo", maintype="image", subtype="png",
                          cid="<logo@x>", filename="logo.png")
    return message.as_bytes(policy=SMTP)


def test_a_related_image_the_html_shows_stays_inline_with_its_content_id() -> None:
    sub = read_message(related_message('<p><img src="cid:logo@x"></p>'), ENVELOPE)
    (image,) = sub.attachments
    assert (image.filename, image.content_id) == ("logo.png", "logo@x")
    (stored,) = plan(sub).content.attachments
    assert isinstance(stored, AttachmentRef) and stored.is_inline


def test_a_related_attachment_the_html_does_not_show_stays_an_attachment() -> None:
    sub = read_message(related_message("<p>no image</p>"), ENVELOPE)
    (image,) = sub.attachments
    assert image.content_id is None


# --- 4. signed and encrypted parts inside a message Outbox rebuilds ------------------------
# (signed or encrypted mail itself goes out as it came: tests/unit/test_sealed_mail.py)

@pytest.mark.parametrize("kind", [
    'multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256',
    'multipart/encrypted; protocol="application/pgp-encrypted"',
])
def test_a_signed_or_encrypted_part_inside_is_refused_in_one_line(kind: str) -> None:
    raw = (f"From: app@example.test\r\nTo: ann@example.test\r\nSubject: s\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=out\r\n\r\n"
           f"--out\r\nContent-Type: text/plain\r\n\r\na footer a list added\r\n"
           f"--out\r\nContent-Type: {kind}; boundary=b1\r\n\r\n"
           "--b1\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n"
           "--b1\r\nContent-Type: application/octet-stream\r\n\r\nsig\r\n--b1--\r\n"
           "--out--\r\n").encode()
    with pytest.raises(InputError) as info:
        read_message(raw, ENVELOPE)
    assert "cannot be relayed intact" in info.value.message
    assert kind.split(";")[0] in info.value.message and "\n" not in info.value.message
