"""core.ratelimit: a key's token bucket (a minute's worth at once, refilled at the
rate), leases, give-backs, and never more than the limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.core.ratelimit import Bucket, Limit, take, until_full

T0 = datetime(2030, 1, 1, tzinfo=UTC)
NEW = Bucket(None, None)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(("per_minute", "lease"), [
    (1, 1), (10, 1), (59, 1), (60, 1), (119, 1), (120, 2), (600, 10), (6000, 100)])
def test_a_lease_is_a_seconds_worth_and_at_least_one(per_minute: int, lease: int) -> None:
    assert Limit(per_minute).lease == lease
    assert Limit(per_minute).lease <= max(1, per_minute // 60)


def test_ten_a_minute_allows_ten_at_once_then_one_every_six_seconds() -> None:
    bucket, limit = NEW, Limit(10)
    for _ in range(10):
        grant, bucket = take(bucket, limit, 1, 1, 0, at(0))
        assert grant.granted == 1
    refused, bucket = take(bucket, limit, 1, 1, 0, at(0))
    assert (refused.granted, refused.wait) == (0, timedelta(seconds=6))
    assert take(bucket, limit, 1, 1, 0, at(5.9))[0].granted == 0
    assert take(bucket, limit, 1, 1, 0, at(6))[0].granted == 1


def test_a_grant_is_between_need_and_want_and_refuses_less_than_need() -> None:
    limit = Limit(600)
    grant, bucket = take(NEW, limit, 3, 10, 0, at(0))
    assert (grant.granted, grant.left) == (10, 590)
    _, empty = take(bucket, limit, 590, 590, 0, at(0))
    partial, _ = take(empty, limit, 3, 10, 0, at(0.5))  # 5 tokens back
    assert partial.granted == 5
    refused, _ = take(empty, limit, 6, 10, 0, at(0.5))
    assert refused.granted == 0 and refused.wait == timedelta(seconds=0.1)


def test_given_back_tokens_return_but_never_past_the_burst() -> None:
    limit = Limit(10)
    _, bucket = take(NEW, limit, 4, 4, 0, at(0))
    grant, after = take(bucket, limit, 1, 1, 3, at(0))
    assert (grant.left, after.tokens) == (8, 8)
    full, _ = take(NEW, limit, 1, 1, 50, at(0))
    assert full.left == 9


def test_a_need_larger_than_the_burst_never_fits() -> None:
    refused, _ = take(NEW, Limit(10), 11, 11, 0, at(0))
    assert refused.granted == 0 and refused.wait == timedelta(minutes=1)


def test_until_full_is_the_reset() -> None:
    assert until_full(0, Limit(10)) == timedelta(seconds=60)
    assert until_full(10, Limit(10)) == timedelta(0)


@given(st.integers(1, 3000), st.lists(st.tuples(st.floats(0, 5), st.integers(1, 50),
                                                st.integers(0, 50)), max_size=60))
def test_never_more_than_the_burst_plus_what_the_rate_mints(
        per_minute: int, takes: list[tuple[float, int, int]]) -> None:
    """Whatever is asked, and whenever: granted - given back <= burst + rate x time."""
    limit, bucket, now, granted, returned = Limit(per_minute), NEW, 0.0, 0, 0
    for step, want, back in takes:
        now += step
        back = min(back, granted - returned)  # only what was taken can come back
        grant, bucket = take(bucket, limit, 1, want, back, at(now))
        granted, returned = granted + grant.granted, returned + back
        assert 0 <= grant.left <= limit.capacity
    assert granted - returned <= limit.capacity + limit.per_second * now + 1e-6
