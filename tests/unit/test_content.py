"""core.content: where each file goes in the body, and which blobs a message keeps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from outbox.core.content import (
    AttachmentRef,
    EmbeddedFile,
    LinkRef,
    MessageContent,
    PlannedBlob,
    date_header,
)

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
LINK = LinkRef("https://outbox.example/d/T", NOW + timedelta(days=7))
FILE = AttachmentRef("a.pdf", "application/pdf", "a" * 64, 10)
LOGO = AttachmentRef("logo.png", "image/png", "b" * 64, 20, content_id="logo")
BIG = AttachmentRef("big.iso", "", "c" * 64, 3000, link=LINK)
OLD = EmbeddedFile("old.txt", "text/plain", "aGVsbG8=")


def content(*attachments: AttachmentRef | EmbeddedFile) -> MessageContent:
    return MessageContent(from_="me@example.com", date="Wed, 01 May 2024 12:30:00 +0000",
                          attachments=attachments)


def test_each_file_has_one_place_in_the_body() -> None:
    stored = content(FILE, LOGO, BIG, OLD)
    assert stored.attached == (FILE, OLD)
    assert stored.inline == (LOGO,)
    assert stored.linked == ((BIG, LINK),)


def test_a_linked_image_is_a_link_not_inline() -> None:
    linked_logo = replace(LOGO, link=LINK)
    stored = content(linked_logo)
    assert (stored.inline, stored.attached) == ((), ())
    assert stored.linked == ((linked_logo, LINK),)


def test_blob_uses_are_one_per_file_in_the_blob_store() -> None:
    assert content(FILE, LOGO, BIG, OLD, FILE).blob_uses() == (
        PlannedBlob(FILE.sha256, 10), PlannedBlob(LOGO.sha256, 20),
        PlannedBlob(BIG.sha256, 3000, LINK.expires_at))


def test_a_file_both_attached_and_linked_is_kept_until_the_link_expires() -> None:
    linked = replace(FILE, link=LINK)
    assert content(FILE, linked).blob_uses() == (PlannedBlob(FILE.sha256, 10, LINK.expires_at),)
    assert content(linked, FILE).blob_uses() == (PlannedBlob(FILE.sha256, 10, LINK.expires_at),)


def test_with_date_changes_only_the_date() -> None:
    stored = content(FILE)
    later = stored.with_date(NOW + timedelta(days=1))
    assert later.date == "Thu, 02 May 2024 12:30:00 +0000"
    assert replace(later, date=stored.date) == stored


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)),
                                               timezone(timedelta(hours=-7, minutes=-30))])))
def test_the_date_header_is_the_standard_librarys_text(at: datetime) -> None:
    assert date_header(at) == format_datetime(at)


def test_the_same_instant_in_another_offset_is_written_in_that_offset() -> None:
    utc = datetime(2024, 5, 1, 12, 30, 5, 1000, tzinfo=UTC)
    assert date_header(utc) == "Wed, 01 May 2024 12:30:05 +0000"
    plus_two = utc.astimezone(timezone(timedelta(hours=2)))
    assert date_header(plus_two) == "Wed, 01 May 2024 14:30:05 +0200"
    assert date_header(utc.replace(microsecond=999_999)) == "Wed, 01 May 2024 12:30:05 +0000"
    assert date_header(utc + timedelta(seconds=1)) == "Wed, 01 May 2024 12:30:06 +0000"
