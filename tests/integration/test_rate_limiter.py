"""The rate limiter of one process (`service.ratelimits`) over a real SQLite store:
what a busy key, a refused key and a broken database cost the hot path. Both clocks
are passed in; the limits across processes and nodes: tests/e2e/test_rate_limits.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tests.contract.support import T0

from outbox.core.ratelimit import Grant, Limit
from outbox.errors import LimitExceeded, RateLimited, StorageError
from outbox.service.keys import Principal
from outbox.service.ratelimits import RateLimits
from outbox.store.base import Store
from outbox.store.factory import open_store


class Clocks:
    """The database's clock and the monotonic one, moved together."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return 1000.0 + self.seconds


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path}/outbox.db")
    await opened.migrate()
    yield opened
    await opened.close()


def limiter(store: Store, clocks: Clocks) -> RateLimits:
    return RateLimits(store.rate_limits, clock=clocks.wall, monotonic=clocks.monotonic)


async def test_a_busy_key_costs_the_database_one_take_a_second(store: Store) -> None:
    clocks = Clocks()
    limits = limiter(store, clocks)
    busy = Principal("busy", frozenset({"send"}), messages_per_minute=6000)  # leases of 100

    for _ in range(950):
        await limits.admit_messages(busy)
    assert limits.database_takes == 10

    clocks.seconds = 1.1  # the lease ran out with 50 unspent: they go back with the next take
    quota = await limits.admit_messages(busy)
    assert limits.database_takes == 11
    assert quota is not None and quota.remaining == 6000 - 951 + 110  # 1.1 s refilled 110


async def test_a_key_without_a_limit_never_reaches_the_database(store: Store) -> None:
    limits = limiter(store, Clocks())
    free = Principal("free", frozenset({"send"}))
    assert [await limits.admit_request(free) for _ in range(100)] == [None] * 100
    assert limits.database_takes == 0


async def test_a_refused_key_is_refused_from_memory_until_its_token_is_due(store: Store) -> None:
    clocks = Clocks()
    limits = limiter(store, clocks)
    ten = Principal("ten", frozenset({"send"}), messages_per_minute=10)
    for _ in range(10):
        await limits.admit_messages(ten)
    with pytest.raises(RateLimited) as refused:
        await limits.admit_messages(ten)
    assert (refused.value.retry_after, refused.value.limit) == (6, 10)
    takes = limits.database_takes

    for _ in range(100):
        with pytest.raises(RateLimited):
            await limits.admit_messages(ten)
    assert limits.database_takes == takes

    clocks.seconds = 6.0
    assert await limits.admit_messages(ten) is not None
    assert limits.database_takes == takes + 1


async def test_a_batch_refused_after_a_smaller_refusal_waits_for_its_own_count(
        store: Store) -> None:
    """3 a minute, used up: one message waits 20 s, a batch of 2 waits 40 s (not the
    single's 20 s, remembered), and passes when those 40 s are over, not before."""
    clocks = Clocks()
    limits = limiter(store, clocks)
    three = Principal("three", frozenset({"send"}), messages_per_minute=3)
    for _ in range(3):
        await limits.admit_messages(three)
    with pytest.raises(RateLimited) as single:
        await limits.admit_messages(three)
    with pytest.raises(RateLimited) as batch:
        await limits.admit_messages(three, 2)
    assert (single.value.retry_after, batch.value.retry_after) == (20, 40)

    clocks.seconds = 21.0  # one token back: the single would pass, the batch not yet
    with pytest.raises(RateLimited) as early:
        await limits.admit_messages(three, 2)
    assert (early.value.retry_after, early.value.remaining) == (19, 1)
    clocks.seconds = 40.0
    assert await limits.admit_messages(three, 2) is not None


async def test_more_at_once_than_a_minute_s_worth_is_refused_without_a_wait(
        store: Store) -> None:
    """It can never pass as it is: `LimitExceeded` (422), not `RateLimited` with a
    Retry-After, whether or not the key is over its limit right now."""
    limits = limiter(store, Clocks())
    ten = Principal("k", frozenset(), messages_per_minute=10)
    with pytest.raises(LimitExceeded, match="11 messages at once are more than") as fresh:
        await limits.admit_messages(ten, 11)
    assert "messages_per_minute = 10" in fresh.value.message
    for _ in range(10):
        await limits.admit_messages(ten)
    with pytest.raises(RateLimited):
        await limits.admit_messages(ten)
    with pytest.raises(LimitExceeded):  # not the remembered refusal of one
        await limits.admit_messages(ten, 11)


class BrokenStore:
    async def take_tokens(self, key: str, limit: Limit, need: int, want: int,
                          give_back: int, now: datetime) -> Grant:
        raise StorageError("database error: the disk is on fire")


async def test_requests_pass_when_the_database_cannot_be_asked(
        capsys: pytest.CaptureFixture[str]) -> None:
    clocks = Clocks()
    broken = BrokenStore()
    limits = RateLimits(broken, clock=clocks.wall, monotonic=clocks.monotonic)
    key = Principal("k", frozenset(), requests_per_minute=1)
    for _ in range(50):
        await limits.admit_request(key)  # no RateLimited, though over 1 a minute
    assert limits.database_takes == 1  # asked again a second later, not per request
    clocks.seconds = 1.5
    await limits.admit_request(key)
    assert limits.database_takes == 2
    assert capsys.readouterr().out.count("rate limits not checked") == 1  # once per streak
