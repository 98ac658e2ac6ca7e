"""list (keyset pagination, newest first) and stats."""

from __future__ import annotations

import pytest

from outbox.core.model import MessageStatus
from outbox.errors import InputError
from outbox.store.base import Store
from tests.contract.support import HELD, LEASE, T0, at, finished, new_message


async def test_pages_cover_every_message_once_newest_first(store: Store) -> None:
    # Pairs share an acceptance time, so the id must break ties.
    for i in range(23):
        await store.messages.enqueue(new_message(id=f"m{i:02d}", accepted_at=at(i // 2)))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.messages.list(None, 5, cursor)
        seen += [m.id for m in page.messages]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert pages == 5
    assert seen == sorted((f"m{i:02d}" for i in range(23)),
                          key=lambda id: (int(id[1:]) // 2, id), reverse=True)


async def test_a_full_last_page_has_no_next_cursor(store: Store) -> None:
    for i in range(4):
        await store.messages.enqueue(new_message(accepted_at=at(i)))

    first = await store.messages.list(None, 2, None)
    second = await store.messages.list(None, 2, first.next_cursor)

    assert first.next_cursor is not None and len(second.messages) == 2
    assert second.next_cursor is None


async def test_list_filters_by_status_and_carries_recipients(store: Store) -> None:
    await store.messages.enqueue(new_message(id="held", hold=HELD,
                                             accepted_at=at(1)))
    await store.messages.enqueue(new_message(id="q1", to=["a@example.com", "b@example.com"],
                                             accepted_at=at(2)))
    await store.messages.enqueue(new_message(id="q2", accepted_at=at(3)))

    page = await store.messages.list(MessageStatus.QUEUED, 10, None)

    assert [m.id for m in page.messages] == ["q2", "q1"]
    assert [r.address for r in page.messages[1].recipients] == ["a@example.com",
                                                                  "b@example.com"]
    assert (await store.messages.list(MessageStatus.SENT, 10, None)).messages == ()


@pytest.mark.parametrize("cursor", ["garbage", "e30", "WyJ4IiwgMV0"])
async def test_a_bad_cursor_is_an_input_error(store: Store, cursor: str) -> None:
    with pytest.raises(InputError) as caught:
        await store.messages.list(None, 10, cursor)
    assert caught.value.field == "cursor"


async def test_a_limit_below_one_is_an_input_error(store: Store) -> None:
    with pytest.raises(InputError):
        await store.messages.list(None, 0, None)


async def test_stats_count_by_status_and_find_the_oldest_waiting(store: Store) -> None:
    empty = await store.messages.stats()
    assert set(empty.by_status) == {s.value for s in MessageStatus}
    assert sum(empty.by_status.values()) == 0 and empty.oldest_pending_at is None

    await store.messages.enqueue(new_message(id="old", accepted_at=at(1)))
    await store.messages.enqueue(new_message(id="new", accepted_at=at(2)))
    await store.messages.enqueue(new_message(id="held", accepted_at=T0, hold=HELD))
    (claim,) = await store.messages.claim_due("w", at(5), at(5) + LEASE, 1)
    await store.messages.record_attempts([finished(claim, MessageStatus.SENT)])

    stats = await store.messages.stats()
    assert {k: v for k, v in stats.by_status.items() if v} == {"queued": 1, "sent": 1,
                                                               "held": 1}
    assert stats.oldest_pending_at == at(2)
