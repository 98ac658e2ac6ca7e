"""PostgreSQL's planner statistics kept in step with the queue's growth
(`store.retention.refresh_statistics`).

PostgreSQL plans a query from the statistics ANALYZE gathers, and a prepared
statement (asyncpg prepares each one) keeps a generic plan after its fifth run until
the statistics of a table it reads change. On a fresh database those plans are made
while `messages` holds a handful of rows: the idempotency-key guard of every group
commit (sql/group_insert.py) then scanned the whole table, however large it grew, until
an ANALYZE. Autovacuum runs one after a minute at the earliest (`autovacuum_naptime`),
and never where it is off, as on the CI machine's cluster. Measured there on issue 15's
paced load (500 submits a second for 16 s, 20 clients, `outbox serve` on a fresh
database): 6,584 sequential scans read 21 million rows of `messages`, and a submit's
mean latency rose from 2.5 ms in the first seconds to 13 ms in the last.

So the workers ANALYZE each of Outbox's tables that has changed by as many rows as it
held at its last analysis (1,000 at least): a handful of times while a queue grows from
empty to a million, once each time it has doubled, and never in a steady state, where
autovacuum's own threshold (10 % by default) comes first. Tables another role owns,
which ANALYZE would skip with a warning every round, are left out. `SKIP_LOCKED`: a table
another session holds locked against ANALYZE (another worker's ANALYZE, a VACUUM, a
migration) is skipped this round, not waited for.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from outbox.store.tables import metadata

FLOOR = 1000  # rows changed before a table's first analysis is worth its cost

_GROWN = text("""
SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND s.relname = ANY(CAST(:names AS TEXT[]))
  AND s.n_mod_since_analyze >= GREATEST(:floor, c.reltuples)
  AND pg_has_role(c.relowner, 'USAGE')
ORDER BY s.relname""")


def refresh_statistics(conn: Connection) -> tuple[str, ...]:
    """ANALYZE the tables that changed enough (the module docstring); their names,
    the skipped locked ones included."""
    if conn.dialect.name != "postgresql":  # SQLite keeps no generic plans
        return ()
    names = sorted(metadata.tables)
    grown = tuple(conn.execute(_GROWN, {"names": names, "floor": FLOOR}).scalars())
    if grown:
        quote = conn.dialect.identifier_preparer.quote
        conn.execute(text(f"ANALYZE (SKIP_LOCKED) {', '.join(quote(t) for t in grown)}"))
    return grown
