"""`SqlRateLimits`: `store.base.RateLimitStore` over a `Runner`: each key's token
bucket in `rate_limit_buckets`, read, taken from (core.ratelimit) and written back
in one transaction; the row is locked on PostgreSQL, and SQLite's writer holds the
database. A take that grants nothing writes nothing (refill is a function of time)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from outbox.core import ratelimit
from outbox.core.ratelimit import Bucket, Grant, Limit
from outbox.store.sql.runner import Runner
from outbox.store.sql.upsert import upsert
from outbox.store.tables_webhooks import rate_limit_buckets

b = rate_limit_buckets


def _bucket(conn: Connection, key: str, limit: Limit, now: datetime) -> Bucket:
    query = select(b.c.tokens, b.c.counted_at).where(b.c.key == key)
    if conn.dialect.name != "postgresql":
        row = conn.execute(query).first()
        return Bucket(row.tokens, row.counted_at) if row else Bucket(None, None)
    # A full bucket first, so that two nodes taking a new key's first tokens queue on
    # its row instead of both starting from a full bucket.
    conn.execute(upsert(conn, b).values(key=key, tokens=float(limit.capacity),
                                        counted_at=now)
                 .on_conflict_do_nothing(index_elements=["key"]))
    row = conn.execute(query.with_for_update()).one()
    return Bucket(row.tokens, row.counted_at)


def take_tokens(conn: Connection, key: str, limit: Limit, need: int, want: int,
                give_back: int, now: datetime) -> Grant:
    grant, after = ratelimit.take(_bucket(conn, key, limit, now), limit, need, want,
                                  give_back, now)
    if grant.granted or give_back:
        stmt = upsert(conn, b).values(key=key, tokens=after.tokens, counted_at=after.at)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["key"], set_={"tokens": stmt.excluded.tokens,
                                          "counted_at": stmt.excluded.counted_at}))
    return grant


class SqlRateLimits:
    """The rate-limit verbs over one runner."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def take_tokens(self, key: str, limit: Limit, need: int, want: int,
                          give_back: int, now: datetime) -> Grant:
        return await self._run.write(take_tokens, key, limit, need, want, give_back, now)
