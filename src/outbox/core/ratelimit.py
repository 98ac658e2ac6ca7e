"""Per-API-key rate limits (`requests_per_minute`, `messages_per_minute`) as token
buckets, shared by every node through the store.

A bucket holds at most a minute's worth of tokens (the burst a key may use at
once) and refills at its rate. A node takes a small *lease* of tokens at a time
and spends it from memory, so the database is written about once per
`LEASE_SECONDS` per key and node at full speed, not once per request; tokens a
node leased and did not spend go back with its next take. Pure: the store calls
`take` inside the transaction that reads and writes the bucket, with `now`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

LEASE_SECONDS = 1.0  # a lease is this long's worth of tokens, and lives this long


@dataclass(frozen=True, slots=True)
class Limit:
    """`per_minute` tokens a minute, up to a minute's worth at once; 0: no limit."""

    per_minute: int

    @property
    def is_limited(self) -> bool:
        return self.per_minute > 0

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0

    @property
    def capacity(self) -> int:
        return self.per_minute

    @property
    def lease(self) -> int:
        """Tokens a node asks for at once: LEASE_SECONDS' worth, at least one. Under a
        sixtieth of the burst, so no node can hoard what the others need."""
        return max(1, math.floor(self.per_second * LEASE_SECONDS))


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float | None  # None: never used (full)
    at: datetime | None  # when `tokens` was counted


@dataclass(frozen=True, slots=True)
class Grant:
    granted: int  # 0, or between `need` and `want`
    left: float  # tokens still in the shared bucket after this take
    wait: timedelta  # with nothing granted: until `need` tokens will be there

    @property
    def ok(self) -> bool:
        return self.granted > 0


def refilled(bucket: Bucket, limit: Limit, now: datetime) -> float:
    if bucket.tokens is None or bucket.at is None:
        return float(limit.capacity)
    elapsed = max((now - bucket.at).total_seconds(), 0.0)
    return min(float(limit.capacity), bucket.tokens + elapsed * limit.per_second)


def take(bucket: Bucket, limit: Limit, need: int, want: int, give_back: int,
         now: datetime) -> tuple[Grant, Bucket]:
    """Give back `give_back` unspent tokens, then take between `need` and `want`
    tokens, or none when fewer than `need` are there. Returns the grant and the
    bucket to store."""
    tokens = min(float(limit.capacity), refilled(bucket, limit, now) + max(give_back, 0))
    if need > limit.capacity or tokens < need:
        return Grant(0, tokens, wait_for(need, tokens, limit)), Bucket(tokens, now)
    granted = min(max(want, need), math.floor(tokens))
    return Grant(granted, tokens - granted, timedelta(0)), Bucket(tokens - granted, now)


def wait_for(need: int, tokens: float, limit: Limit) -> timedelta:
    """Until `need` tokens are in the bucket; a need over the burst never fits, and
    gets a full minute (the caller says so)."""
    if need > limit.capacity:
        return timedelta(minutes=1)
    return timedelta(seconds=max(need - tokens, 0.0) / limit.per_second)


def until_full(left: float, limit: Limit) -> timedelta:
    """Until the bucket holds its whole burst again (RateLimit-Reset)."""
    return timedelta(seconds=max(limit.capacity - left, 0.0) / limit.per_second)
