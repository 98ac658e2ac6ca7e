"""`service/message_ids.replayed`: a Message-ID given again is the same message (a
replay) when only what Outbox makes anew at each submission differs (the Date, a file's
download link and its expiry, the message key in the one-click unsubscribe link), and
another message (422 message_id_reused) when anything the client sent differs. Pure
values, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from outbox.core.compose import PlannedMessage, PlannedRecipient
from outbox.core.content import AttachmentRef, LinkRef, MessageContent
from outbox.core.model import MessageStatus, RecipientStatus
from outbox.core.unsubscribe import make_token, unsubscribe_headers
from outbox.errors import MessageIdReused
from outbox.service.message_ids import replayed
from outbox.store.values import Message, Recipient

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
BASE = "https://mail.example.test"
FILE = AttachmentRef(filename="report.pdf", content_type="application/pdf",
                     sha256="ab" * 32, size=5_000_000)


def link(expires_at: datetime) -> LinkRef:
    return LinkRef(url=f"{BASE}/files/{int(expires_at.timestamp())}/sig", expires_at=expires_at)


def unsubscribe(message_key: str, address: str = "ann@example.test",
                base: str = BASE) -> tuple[tuple[str, str], ...]:
    return tuple(unsubscribe_headers(
        f"{base}/unsubscribe/{make_token(message_key, address, b'k' * 32)}").items())


def content(date: str = "Tue, 01 Jan 2030 12:00:00 +0000", **fields: object) -> MessageContent:
    base = MessageContent(from_="shop@example.test", date=date, to=("ann@example.test",),
                          subject="Report", text="Attached.")
    return replace(base, **fields)  # type: ignore[arg-type]


def earlier(stored: MessageContent) -> Message:
    return Message(id="01earlier", message_id="<r-1@shop.example.test>",
                   status=MessageStatus.QUEUED, sender="shop@example.test", content=stored,
                   metadata={}, attempts=0, created_at=T0, updated_at=T0, due_at=T0,
                   held_seconds=0.0, hold_reason="", resent_from=None,
                   recipients=(Recipient("ann@example.test", "to", "default",
                                         RecipientStatus.PENDING),))


def planned(again: MessageContent) -> PlannedMessage:
    return PlannedMessage(sender="shop@example.test", message_id="<r-1@shop.example.test>",
                          content=again, size=1000,
                          recipients=(PlannedRecipient("ann@example.test", "to", "default"),))


def test_a_file_sent_as_a_link_with_another_expiry_is_the_same_message() -> None:
    first = content(attachments=(replace(FILE, link=link(T0 + timedelta(days=7))),))
    second = content(date="Tue, 01 Jan 2030 12:05:00 +0000",
                     attachments=(replace(FILE, link=link(T0 + timedelta(days=7, minutes=5))),))
    stored = earlier(first)
    assert replayed(stored, planned(second)) is stored


def test_another_file_behind_the_link_is_another_message() -> None:
    first = content(attachments=(replace(FILE, link=link(T0)),))
    second = content(attachments=(replace(FILE, sha256="cd" * 32, link=link(T0)),))
    with pytest.raises(MessageIdReused):
        replayed(earlier(first), planned(second))


def test_the_unsubscribe_link_of_another_submission_is_the_same_message() -> None:
    stored = earlier(content(headers=unsubscribe("01earlier")))
    assert replayed(stored, planned(content(headers=unsubscribe("01second")))) is stored


@pytest.mark.parametrize("headers", [
    unsubscribe("01second", base="https://other.example.test"),  # another place
    unsubscribe("01second", address="bob@example.test"),  # someone else unsubscribed
    (("List-Unsubscribe", "<mailto:leave@shop.example.test>"),),  # the client's own
])
def test_another_unsubscribe_link_is_another_message(
        headers: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(MessageIdReused):
        replayed(earlier(content(headers=unsubscribe("01earlier"))),
                 planned(content(headers=headers)))


def test_a_client_list_unsubscribe_is_compared_as_written() -> None:
    own = (("List-Unsubscribe", "<mailto:leave@shop.example.test?subject=1>"),)
    other = (("List-Unsubscribe", "<mailto:leave@shop.example.test?subject=2>"),)
    stored = earlier(content(headers=own))
    assert replayed(stored, planned(content(headers=own))) is stored
    with pytest.raises(MessageIdReused):
        replayed(stored, planned(content(headers=other)))
