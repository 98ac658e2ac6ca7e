"""The rate-limits facet: per API key, requests and messages a minute (token
buckets, core.ratelimit), shared by every node and process on the database.

A key's limits come from its `[auth] api_keys` entry or `outbox keys create`
(`requests_per_minute`, `messages_per_minute`), else from `[auth]`'s defaults;
0 is no limit. The hot path stays in memory: a node takes a lease of tokens
from the shared bucket (a second's worth, at least one) and spends it locally,
so the database is written about once a second per key and node at full speed,
and not at all for a key without limits. Tokens left when a lease ends (after
`LEASE_SECONDS`) go back with the next take. A refusal is remembered until the
token it waits for is due, so a client that keeps knocking costs no database
work either. Over its limit, a key gets `RateLimited` (HTTP 429) with the
seconds until this request's count can pass; more at once than the key's
minute's worth can never pass, and gets `LimitExceeded` (HTTP 422) without a wait.

If the database cannot be asked, requests pass (fail open): the limit protects
the service, and a request that needs the database fails on its own.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from outbox.clock import utcnow
from outbox.core import ratelimit
from outbox.core.ratelimit import LEASE_SECONDS, Limit
from outbox.errors import LimitExceeded, RateLimited, StorageError
from outbox.service.keys import Principal
from outbox.store.base import RateLimitStore

log = structlog.get_logger("outbox.ratelimits")

REQUESTS, MESSAGES = "requests", "messages"
UNCHECKED = 10**9  # a lease's tokens while the database cannot be asked (fail open)


@dataclass(frozen=True, slots=True)
class Quota:
    """What the RateLimit-* headers say about one limit after a request."""

    limit: int  # per minute
    remaining: int  # about: this node's view
    reset: int  # whole seconds until the whole minute's worth is back


@dataclass(slots=True)
class _Lease:
    """One node's tokens of one bucket."""

    tokens: int = 0
    expires: float = float("-inf")  # monotonic
    left: float = 0.0  # the shared bucket after this node's last take
    blocked_until: float = float("-inf")  # a refusal holds until then ...
    blocked_need: int = 0  # ... for a need this large or larger
    unchecked: bool = False  # `tokens` are not the bucket's: the database did not answer
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RateLimits:
    def __init__(self, store: RateLimitStore, *, clock: Callable[[], datetime] = utcnow,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._clock = clock
        self._monotonic = monotonic
        self._leases: dict[str, _Lease] = {}
        self.database_takes = 0  # how often the store was asked (tests, benchmark)
        self._failing = False

    async def admit_request(self, principal: Principal) -> Quota | None:
        """One API request by this key; `RateLimited` when it is over its limit."""
        return await self.take(principal.name, REQUESTS, principal.requests_per_minute)

    async def admit_messages(self, principal: Principal, count: int = 1) -> Quota | None:
        """`count` messages submitted by this key, before they are queued;
        `RateLimited` (and none of them queued) when they are over its limit;
        `LimitExceeded` when they are more than it may send in a minute."""
        return await self.take(principal.name, MESSAGES, principal.messages_per_minute, count)

    async def take(self, name: str, kind: str, per_minute: int, count: int = 1
                   ) -> Quota | None:
        """Spend `count` of key `name`'s `kind` tokens; None when it has no limit.
        `RateLimited` when it is over its limit (nothing spent); `LimitExceeded` when
        `count` is more than the whole bucket, which no wait makes fit."""
        limit = Limit(per_minute)
        if not limit.is_limited or count <= 0:
            return None
        if count > limit.capacity:
            raise _never_fits(name, kind, limit, count)
        lease = self._leases.setdefault(f"{name}:{kind}", _Lease())
        self._refuse_if_blocked(name, kind, limit, lease, count)
        if not self._spend(lease, count):
            async with lease.lock:  # one take from the store per lease at a time
                if not self._spend(lease, count):
                    await self._refill(name, kind, limit, lease, count)
        return None if lease.unchecked else _quota(lease, limit)

    def _spend(self, lease: _Lease, count: int) -> bool:
        if lease.tokens >= count and self._monotonic() < lease.expires:
            lease.tokens -= count
            return True
        return False

    def _refuse_if_blocked(self, name: str, kind: str, limit: Limit, lease: _Lease,
                           count: int) -> None:
        """Refused from memory while the bucket is short of `count`. The block was
        counted for `blocked_need` tokens; a larger count waits for its extra tokens
        too (a smaller one asks the store: it may fit sooner)."""
        wait = lease.blocked_until - self._monotonic()
        if wait > 0 and count >= lease.blocked_need:
            left = lease.blocked_need - wait * limit.per_second  # in the bucket by now
            raise _refusal(name, kind, limit,
                           ratelimit.wait_for(count, left, limit).total_seconds(), left)

    async def _refill(self, name: str, kind: str, limit: Limit, lease: _Lease,
                      count: int) -> None:
        """Give back what is left of the lease and take a new one of at least `count`."""
        give_back = 0 if lease.unchecked else lease.tokens
        lease.tokens, lease.unchecked = 0, False
        self.database_takes += 1
        try:
            grant = await self.store.take_tokens(f"{name}:{kind}", limit, count,
                                                 max(count, limit.lease), give_back,
                                                 self._clock())
        except StorageError as exc:
            self._fail_open(name, lease, exc)
            return
        self._failing = False
        lease.left = grant.left
        if not grant.ok:
            wait = grant.wait.total_seconds()
            lease.blocked_until, lease.blocked_need = self._monotonic() + wait, count
            raise _refusal(name, kind, limit, wait, grant.left)
        lease.tokens = grant.granted - count
        lease.expires = self._monotonic() + LEASE_SECONDS

    def _fail_open(self, name: str, lease: _Lease, exc: StorageError) -> None:
        """This request passes, and so do this key's next ones for a lease's time: the
        database is asked again then, not for every request. Logged once per streak."""
        if not self._failing:
            log.warning("rate limits not checked while the database does not answer",
                        key=name, error=exc.one_line())
        self._failing = True
        lease.tokens, lease.unchecked = UNCHECKED, True
        lease.expires = self._monotonic() + LEASE_SECONDS


def _quota(lease: _Lease, limit: Limit) -> Quota:
    left = lease.left + lease.tokens
    return Quota(limit.per_minute, max(int(left), 0),
                 math.ceil(ratelimit.until_full(left, limit).total_seconds()))


def _refusal(name: str, kind: str, limit: Limit, wait: float, left: float) -> RateLimited:
    retry_after = max(math.ceil(wait), 1)
    reset = math.ceil(ratelimit.until_full(left, limit).total_seconds())
    message = (f"API key '{name}' is over its limit of {limit.per_minute} {_what(kind)} per "
               f"minute; try again in {retry_after} s")
    return RateLimited(message, retry_after=retry_after, limit=limit.per_minute,
                       remaining=max(int(left), 0), reset=reset)


def _never_fits(name: str, kind: str, limit: Limit, count: int) -> LimitExceeded:
    """Not a 429: no Retry-After is true for a count the bucket cannot hold, and a
    client that honours one would retry it for ever."""
    return LimitExceeded(f"{count} {_what(kind)} at once are more than API key '{name}' "
                         f"may send in a minute ({kind}_per_minute = {limit.per_minute}); "
                         f"send at most {limit.capacity} at once")


def _what(kind: str) -> str:
    return "API requests" if kind == REQUESTS else "messages"
