"""list narrowed by recipient, relay, acceptance time and subject, with cursors that
page through the filtered messages only (both backends)."""

from __future__ import annotations

import dataclasses

import pytest

from outbox.core.model import MessageStatus
from outbox.store.base import MessageFilter, NewMessage, Store
from tests.contract.support import HELD, at, new_message


def titled(message: NewMessage, subject: str) -> NewMessage:
    return dataclasses.replace(message, content=dataclasses.replace(message.content,
                                                                    subject=subject))


async def fill(store: Store) -> None:
    """Thirty messages: every third to Bob (mixed case), every fifth on relay `eu`,
    subjects "Invoice 50% <n>" for even n and "Report_<n>" for odd n; m<n> accepted at n s."""
    for n in range(30):
        to = ["ann@example.com", "Bob@Example.com"] if n % 3 == 0 else ["ann@example.com"]
        subject = f"Invoice 50% {n}" if n % 2 == 0 else f"Report_{n}"
        message = new_message(id=f"m{n:02d}", accepted_at=at(n), to=to,
                              relay="eu" if n % 5 == 0 else "default",
                              hold=HELD if n == 27 else None)
        await store.messages.enqueue(titled(message, subject))


async def all_pages(store: Store, where: MessageFilter, limit: int = 4,
                    status: MessageStatus | None = None) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.messages.list(status, limit, cursor, where)
        assert len(page.messages) <= limit
        seen += [m.id for m in page.messages]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def ids(numbers: range | list[int]) -> list[str]:
    return [f"m{n:02d}" for n in sorted(numbers, reverse=True)]


CASES = [
    (MessageFilter(recipient="bob@example.com"), [n for n in range(30) if n % 3 == 0]),
    (MessageFilter(recipient="BOB@EXAMPLE.COM"), [n for n in range(30) if n % 3 == 0]),
    (MessageFilter(recipient="bob@example"), []),
    (MessageFilter(relay="eu"), [n for n in range(30) if n % 5 == 0]),
    (MessageFilter(relay="nowhere"), []),
    (MessageFilter(since=at(10), until=at(20)), list(range(10, 20))),
    (MessageFilter(since=at(25)), list(range(25, 30))),
    (MessageFilter(until=at(3)), [0, 1, 2]),
    (MessageFilter(subject="invoice"), [n for n in range(30) if n % 2 == 0]),
    # LIKE's wildcards are literal characters in a search.
    (MessageFilter(subject="50%"), [n for n in range(30) if n % 2 == 0]),
    (MessageFilter(subject="t_1"), [1, 11, 13, 15, 17, 19]),
    (MessageFilter(subject="%"), [n for n in range(30) if n % 2 == 0]),
    (MessageFilter(subject="_"), [n for n in range(30) if n % 2 == 1]),
    (MessageFilter(recipient="bob@example.com", relay="eu", since=at(1)), [15]),
    (MessageFilter(relay="eu", subject="report", until=at(25)), [5, 15]),
]


@pytest.mark.parametrize(("where", "expected"), CASES)
async def test_filters_page_through_exactly_the_matching_messages(
        store: Store, where: MessageFilter, expected: list[int]) -> None:
    await fill(store)

    assert await all_pages(store, where) == ids(expected)
    assert await all_pages(store, where, limit=500) == ids(expected)
    assert await store.messages.count(None, where) == len(expected)


async def test_filters_combine_with_the_status(store: Store) -> None:
    await fill(store)

    held = await all_pages(store, MessageFilter(subject="report"), status=MessageStatus.HELD)
    queued = await all_pages(store, MessageFilter(recipient="bob@example.com", since=at(20)),
                             status=MessageStatus.QUEUED)

    assert held == ["m27"]
    assert queued == ids([21, 24])
    assert await store.messages.count(MessageStatus.HELD, MessageFilter(subject="report")) == 1
    assert await store.messages.count(MessageStatus.QUEUED, MessageFilter(
        recipient="bob@example.com", since=at(20))) == 2


@pytest.mark.parametrize("searched", ["ünïcode", "ÜNÏCODE", "grüße", "GRÜßE", "ΣΟΦΊΑ"])
async def test_a_subject_search_ignores_the_case_of_every_letter(store: Store,
                                                                  searched: str) -> None:
    """SQLite's lower() folds A-Z only: 'ünïcode' did not find 'Batch 1 Ünïcode' there."""
    for n, subject in enumerate(["Batch 1 Ünïcode", "Grüße aus Köln", "σοφία", "Plain"]):
        await store.messages.enqueue(titled(new_message(id=f"u{n}", accepted_at=at(n)),
                                            subject))
    wanted = {"ünïcode": ["u0"], "grüße": ["u1"], "σοφία": ["u2"]}[searched.lower()]
    assert await all_pages(store, MessageFilter(subject=searched)) == wanted
