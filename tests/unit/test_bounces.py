"""core.bounces and core.suppression: every sample of tests/corpus/bounces is classified
as expected.json says; arbitrary bytes and arbitrary MIME never raise anything but
BounceUnreadable; auto-replies never suppress."""

from __future__ import annotations

import contextlib
import json
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outbox.core.bounces import BounceFormat, BounceKind, parse_bounce
from outbox.core.guidance import CATALOGUE, describe
from outbox.core.suppression import SuppressionReason, suppression_for
from outbox.errors import BounceUnreadable

CORPUS = Path(__file__).parent.parent / "corpus" / "bounces"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


def test_corpus_is_large_and_covers_every_kind() -> None:
    samples = sorted(path.name for path in CORPUS.glob("*.eml"))
    assert samples == sorted(EXPECTED)
    assert len(samples) >= 30
    kinds = {entry["kind"] for entry in EXPECTED.values()}
    assert kinds == {kind.value for kind in BounceKind}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_sample_is_classified(name: str) -> None:
    expected = EXPECTED[name]
    report = parse_bounce((CORPUS / name).read_bytes())
    assert report.kind.value == expected["kind"]
    got = [{"address": r.address, "kind": r.kind.value, "status": r.status,
            "guidance": r.guidance,
            "suppress": (s.value if (s := suppression_for(r)) else None)}
           for r in report.recipients]
    assert got == expected["recipients"]
    for recipient in report.recipients:  # every guidance key is a catalogue entry
        assert recipient.guidance in CATALOGUE


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items()
                                        if e["kind"] in {"auto_reply", "not_bounce"}))
def test_auto_replies_and_other_mail_suppress_nobody(name: str) -> None:
    report = parse_bounce((CORPUS / name).read_bytes())
    assert not report.is_bounce
    assert report.recipients == ()


def test_dsn_status_maps_to_the_catalogue_with_the_servers_words() -> None:
    report = parse_bounce((CORPUS / "postfix_dsn_user_unknown.eml").read_bytes())
    (recipient,) = report.recipients
    assert (recipient.reply.code, recipient.reply.enhanced) == (550, "5.1.1")
    guidance = describe(recipient.guidance, recipient.reply)
    assert guidance.key == "smtp.5.1.1" and guidance.kind == "recipient"
    assert "User unknown in virtual mailbox table" in guidance.explanation
    assert report.original_message_id == "<a1b2c3d4e5f60718293a4b5c6d7e8f90@shop.example.test>"
    assert report.addressed_to == (
        "bounces+018f3a2b4c5d6e7f8091a2b3c4d5e6f7.4f2a9c81d0e3b7a6@bounces.example.test",)
    assert report.format is BounceFormat.DSN


def test_a_dsn_with_a_vacation_header_is_still_a_bounce() -> None:
    raw = (CORPUS / "postfix_dsn_user_unknown.eml").read_bytes()
    raw = raw.replace(b"Auto-Submitted: auto-replied", b"Auto-Submitted: auto-replied\n"
                      b"X-Autoreply: yes")
    assert parse_bounce(raw).kind is BounceKind.HARD


def test_complaint_suppresses_and_soft_bounce_does_not() -> None:
    arf = parse_bounce((CORPUS / "arf_abuse_rfc822.eml").read_bytes())
    assert suppression_for(arf.recipients[0]) is SuppressionReason.COMPLAINT
    assert arf.feedback_type == "abuse"
    delayed = parse_bounce((CORPUS / "postfix_dsn_delayed.eml").read_bytes())
    assert suppression_for(delayed.recipients[0]) is None


@pytest.mark.parametrize("raw", [b"", b"   \r\n", b"\r\n\r\nno header at all"])
def test_nothing_readable_raises_the_typed_error(raw: bytes) -> None:
    with pytest.raises(BounceUnreadable):
        parse_bounce(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_anything_else(raw: bytes) -> None:
    with contextlib.suppress(BounceUnreadable):
        parse_bounce(raw)


_TYPES = st.sampled_from([
    "text/plain", "text/html", "message/delivery-status", "message/global-delivery-status",
    "message/feedback-report", "message/rfc822", "text/rfc822-headers", "application/pdf",
    "multipart/mixed", "image/png"])
_ENCODINGS = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-bogus"])
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
_FIELDS = st.lists(st.tuples(st.sampled_from([
    "Final-Recipient", "Original-Recipient", "Action", "Status", "Diagnostic-Code",
    "Feedback-Type", "Original-Rcpt-To", "To", "Message-ID", "Reporting-MTA"]),
    st.one_of(_TEXT, st.sampled_from(["rfc822; a@b.example", "failed", "delayed", "5.1.1",
                                      "smtp; 550 5.1.1 no", ";", "rfc822;", "utf-8; x@"]))),
    max_size=6)


@st.composite
def reports(draw: st.DrawFn) -> bytes:
    """A multipart/report-shaped message with arbitrary parts, fields and encodings."""
    boundary = draw(st.sampled_from(["b1", "==x==", "a b"]))
    report_type = draw(st.sampled_from(["delivery-status", "feedback-report", "", "x"]))
    lines = [f"From: {draw(_TEXT)!s}".replace("\n", " "),
             f"Subject: {draw(_TEXT)}".replace("\n", " "),
             f'Content-Type: multipart/report; report-type={report_type}; '
             f'boundary="{boundary}"', ""]
    for _ in range(draw(st.integers(0, 4))):
        lines += [f"--{boundary}", f"Content-Type: {draw(_TYPES)}; charset="
                  f"{draw(st.sampled_from(['utf-8', 'bogus-8', 'latin-1']))}",
                  f"Content-Transfer-Encoding: {draw(_ENCODINGS)}", ""]
        lines += [f"{name}: {value}" for name, value in draw(_FIELDS)]
        lines += ["", draw(_TEXT)]
    if draw(st.booleans()):
        lines.append(f"--{boundary}--")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(reports())
def test_arbitrary_reports_never_raise_anything_else(raw: bytes) -> None:
    try:
        report = parse_bounce(raw)
    except BounceUnreadable:
        return
    for recipient in report.recipients:
        assert "@" in recipient.address
        assert recipient.guidance in CATALOGUE


@settings(max_examples=200, deadline=None)
@given(_TEXT, _TEXT, st.sampled_from(["plain", "html"]))
def test_arbitrary_simple_messages_never_raise_anything_else(subject: str, body: str,
                                                              subtype: str) -> None:
    message = EmailMessage()
    message["Subject"] = " ".join(subject.split())
    message["From"] = "someone@example.com"
    message.set_content(body, subtype=subtype)
    with contextlib.suppress(BounceUnreadable):
        parse_bounce(message.as_bytes())
