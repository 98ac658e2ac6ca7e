"""SQLite: many rows in a few statements, not a statement step per row.

The sqlite3 module lets go of the GIL around each step of a statement, and its
executemany steps once per row. The writer thread holds SQLite's write lock, and the turn
among the processes sharing the file (sqlite_turn.py), all the while; each time it lets
go while its event loop is busy, it waits for the GIL again, up to the switch interval
(5 ms). An executemany of 128 rows beside a busy Python thread took 5.9 ms a row instead
of 5 µs; the same rows as one statement, 59 µs a row. Where a transaction writes a few
rows a table, as in a drain, the difference does not show: instructions per message
within 1 % (bench/drain_instructions.py), drains of 10,000 messages by one worker at
2,024-2,466 msg/s with executemany and 2,068-2,507 with these statements (seven
alternations, bench/drain_ab.py); nor did bench/abuse.py's small submits beside
1,000-recipient ones (p99 16.2 ms either way).

So rows go in multi-row statements: `INSERT ... VALUES (...), (...)`, and for an
UPDATE `WITH u(...) AS (VALUES ...) UPDATE ... FROM u` (SQLite 3.33; the claim's
RETURNING already needs 3.35). A template holds ROWS where the rows go. The rows are
split in powers of two (at most 256 to a statement, fewer where SQLite's limit on
parameters asks it), so every statement's text is one of nine per template, which the
driver keeps prepared: preparing one of 128 rows anew took 354 µs, running it prepared
27 µs. Of two rows for one target row, an UPDATE applies only one: the callers give one
per row. Reads still step once per row: reading the claim's rows as one JSON array built
by SQLite cost 6 % more instructions per message, and drains were no faster (commit
780e336).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection

LARGEST = 256  # rows in one statement
ROWS = "{rows}"  # where a template's rows go


def execute(conn: Connection, template: str, found: Sequence[Sequence[Any]]) -> None:
    """`template` (with `{rows}` where the rows' VALUES go) over `found`, tuples of one
    width with values the driver takes as they are, in a statement per chunk
    (`chunk_sizes`), through the transaction's own driver connection."""
    if not found:
        return
    driver = conn.connection.driver_connection
    width = len(found[0])
    largest = _largest(driver, width)
    start = 0
    for size in chunk_sizes(len(found), largest):
        part = found[start:start + size]
        start += size
        driver.execute(statement(template, width, size),  # type: ignore[union-attr]
                       [value for row in part for value in row])


def inserting(table: str, names: str, tail: str = "") -> str:
    """The template of an INSERT of the columns `names` ("a, b") into `table`."""
    return f"INSERT INTO {table} ({names}) VALUES {ROWS}{tail}"


def updating(names: Iterable[str], update: str) -> str:
    """The template of `update` ("UPDATE t SET ... FROM u WHERE ...") with the rows as
    `u`, of the columns `names`."""
    return f"WITH u({', '.join(names)}) AS (VALUES {ROWS}) {update}"


def chunk_sizes(count: int, largest: int = LARGEST) -> list[int]:
    """`count` as whole chunks of `largest` (a power of two), then the rest in powers of
    two, largest first: 300 rows of at most 256 are 256, 32, 8 and 4."""
    sizes = [largest] * (count // largest)
    rest, size = count % largest, largest
    while rest:
        if rest >= size:
            sizes.append(size)
            rest -= size
        size //= 2
    return sizes


def _largest(driver: Any, width: int) -> int:
    """LARGEST, or the largest power of two under SQLite's limit on a statement's
    parameters (32,766 by default, lower where SQLite was built so)."""
    limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width
    size = LARGEST
    while size > max(limit, 1):
        size //= 2
    return size


@cache
def statement(template: str, width: int, rows: int) -> str:
    """`template` with `rows` rows of `width` placeholders."""
    row = f"({', '.join('?' * width)})"
    return template.replace(ROWS, ", ".join([row] * rows))
