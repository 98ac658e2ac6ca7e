"""SQLite: the engine and its pragmas, the runner (the claim is sqlite_claim.py).

A whole transaction runs in a worker thread, so a verb costs one hop between
the event loop and a thread, not three or four per statement as with an
async driver wrapper. Writes go to a single writer thread, which serialises
them within the process, and start with `BEGIN IMMEDIATE`, which takes
SQLite's write lock up front: two processes sharing the file never pick the
same due rows, and a writer never fails half-way on a lock upgrade. Across
processes the writer threads take turns through a lock file first
(`sqlite_turn.py`), rather than sleeping in SQLite's busy handler. Reads
use a plain `BEGIN` on a few reader threads and run beside the writer (WAL).
Enqueues that arrive while a commit is under way share the next commit
(sql/group_commit.py), so one fsync covers many accepted messages.

Other processes sharing the file hear of new mail by a datagram (sqlite_wakeup.py), or
at their poll interval where the platform has no abstract sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import ConnectionPoolEntry

from outbox.store.liveness import LockFiles
from outbox.store.sql import folding
from outbox.store.sql.runner import Body, P, T, translate_errors
from outbox.store.sql.store import SqlStore
from outbox.store.sqlite_claim import pick_due
from outbox.store.sqlite_turn import WriterTurn
from outbox.store.sqlite_wakeup import PeerWakeup
from outbox.store.sqlite_writer import WriterThread

BUSY_TIMEOUT_MS = 30_000
READERS = 4
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",  # a commit is on disk before enqueue returns
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
    # 8 MB of pages per connection, not SQLite's 2 MB: with a million messages queued
    # (2 GB) more of the indexes' inner pages stay at hand, where a claim of 128 read them
    # back from the OS a page at a time. bench/scale.py, a claim's p50: 5.0 ms at 10,000
    # queued; at 1,000,000, 6.6 and 7.0 ms (two runs), 5.4 ms with 8 MB, 5.2 with 32 MB.
    # Not 32: a 100 MB attachment written into the database (bench/memory.py --blobs
    # database) filled it, and serve grew by 43 MB, over the 32 MB target; 18 MB with 8.
    "PRAGMA cache_size=-8192",
)
BEGIN_OPTION = "outbox_sqlite_begin"
# Seconds the writer waits for the write lock before /healthz says writes wait: another
# Outbox process holds it for milliseconds at a time, so a second is a process keeping
# a transaction open (an outside `BEGIN EXCLUSIVE`, a long-running tool).
LOCKED_OUT_AFTER = 1.0


def create_engine(url: URL) -> Engine:
    """An engine where SQLAlchemy, not the sqlite3 module, emits BEGIN."""
    # The sqlite3 module looks for an adapter for every value that is not exactly an
    # int, float, str or bytearray: for None, it asks the protocol for `__adapt__`, and
    # the AttributeError it formats and clears cost more than binding the value. A
    # delivered message binds about 26 None (events, attempts, recipients). With an
    # adapter registered for None, the lookup ends in the adapter table: 1,000 rows of
    # six None each went from 2.5 to 1.3 us a row (timeit, one executemany).
    sqlite3.register_adapter(type(None), _null)
    engine = sqlalchemy.create_engine(url, pool_size=READERS + 1, max_overflow=READERS,
                                      connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


def _null(value: None) -> None:
    return None


def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own
    _incremental_if_new(dbapi_connection)
    for pragma in PRAGMAS:
        dbapi_connection.execute(pragma)
    dbapi_connection.create_function(folding.SQLITE_FUNCTION, 1, folding.lower,
                                     deterministic=True)


def _incremental_if_new(dbapi_connection: Any) -> None:
    """`auto_vacuum=INCREMENTAL` on a file that has no table yet: new databases give
    pages freed by retention back with `incremental_vacuum`. It takes effect only then:
    an older file keeps auto_vacuum=NONE (free pages are reused, the file does not
    shrink) until an offline `VACUUM` (see docs/backup-and-retention.md). Set on every
    connection, it waited for the write lock: each new connection, a reader's too, waited
    for whatever transaction held it, up to the busy timeout (a restore's: a starting
    serve hung silently, found by a stranger pass). Reading it does not wait."""
    if dbapi_connection.execute("PRAGMA auto_vacuum").fetchone()[0] != 2 \
            and dbapi_connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
        dbapi_connection.execute("PRAGMA auto_vacuum=INCREMENTAL")


def _on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
    # Straight to the driver: an empty transaction took 19 us with SQLAlchemy executing
    # the BEGIN, 11 this way (a loop of 5,000), and the writer's BEGIN IMMEDIATE is inside
    # the write turn. A failure here is the driver's own error, which
    # runner.translate_errors turns into a StorageError as it does SQLAlchemy's.
    conn.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]


def _transaction(engine: Engine, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    with engine.begin() as conn:
        return body(conn, *args, **kwargs)


class WriterConnection:
    """The writer thread's one connection, kept from one write to the next.

    Checked out of the pool for each write, it was set up, and reset (a ROLLBACK) on
    return, every time, inside the write turn the other processes wait for: 96 against
    48 us for an empty transaction (a loop of 3,000); 22 % of the writer thread's samples
    holding the interpreter's lock in a delivery process at 100 msg/s (py-spy --gil),
    1 % after. The turns of serve and of the delivery process, probed at 110 msg/s, were
    held 7-9 % less (1.39-1.42 -> 1.27-1.30 ms a delivery transaction). A write that
    raises gives the connection back to the pool, which resets it or, broken, drops it;
    the next write takes another."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        # Set while a write waits for the turn and SQLite's write lock (BEGIN IMMEDIATE),
        # which only another process (or connection) can hold for long.
        self.locked_out_since: float | None = None

    def transaction(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._engine.connect()
        try:
            with conn.begin():
                self.locked_out_since = None  # BEGIN IMMEDIATE returned: the lock is ours
                return body(conn, *args, **kwargs)
        except BaseException:
            self._conn = None
            with contextlib.suppress(Exception):  # the write's own error is the one to tell
                conn.close()
            raise

    def close(self) -> None:
        """Once the writer thread has ended."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _in_turn(turn: WriterTurn | None, writer: WriterConnection, body: Body[P, T],
             *args: P.args, **kwargs: P.kwargs) -> T:
    writer.locked_out_since = time.monotonic()
    try:
        with turn.held() if turn is not None else contextlib.nullcontext():
            return writer.transaction(body, *args, **kwargs)
    finally:
        writer.locked_out_since = None


def _on_copy(engine: Engine, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    beside = Path(engine.url.database or ".").resolve().parent
    with tempfile.TemporaryDirectory(prefix=".outbox-snapshot-", dir=beside) as directory:
        copy = Path(directory) / "snapshot.db"
        source = engine.raw_connection()
        try:
            target = sqlite3.connect(copy)
            try:
                source.driver_connection.backup(target)  # type: ignore[union-attr]
            finally:
                target.close()
        finally:
            source.close()
        snapshot = sqlalchemy.create_engine(f"sqlite:///{copy}")
        try:
            with snapshot.begin() as conn:
                return body(conn, *args, **kwargs)
        finally:
            snapshot.dispose()


def create_store(url: URL) -> SqlStore:
    """The root store on the SQLite file at `url` (nothing is opened yet)."""
    workers = Path(f"{url.database}-workers")  # lock files of the processes using the file
    runner = SqliteRunner(create_engine(url), WriterTurn(workers, BUSY_TIMEOUT_MS / 1000))
    return SqlStore(runner, pick_due, LockFiles(workers), wakeup=PeerWakeup(workers),
                    snapshot=runner.snapshot, locked_out=runner.locked_out)


class SqliteRunner:
    """Reads on a few reader threads (plain `BEGIN`), writes on the one writer
    thread (`BEGIN IMMEDIATE`, in this process's `turn` among those sharing the
    file), those a client waits on first (`write_first`, sqlite_writer.py); each
    call is one whole transaction in one hop."""

    parallel_writes = False

    def __init__(self, engine: Engine, turn: WriterTurn | None = None) -> None:
        self.engine = engine
        self._turn = turn
        self._connection = WriterConnection(
            engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}))
        self._writer = WriterThread("outbox-sqlite-write")
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="outbox-sqlite-read")

    async def read(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(_transaction, self.engine, body, *args, **kwargs)
        async with translate_errors():
            return await asyncio.get_running_loop().run_in_executor(self._readers, call)

    async def write(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._write(False, body, *args, **kwargs)

    async def write_first(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._write(True, body, *args, **kwargs)

    write_alone = write_first  # one writer: a transaction costs no round trips here

    async def _write(self, urgent: bool, body: Body[P, T], *args: P.args,
                     **kwargs: P.kwargs) -> T:
        call = functools.partial(_in_turn, self._turn, self._connection, body, *args, **kwargs)
        async with translate_errors():
            result: T = await asyncio.wrap_future(self._writer.submit(call, urgent=urgent))
            return result

    def locked_out(self) -> float | None:
        """Once the writer has waited `LOCKED_OUT_AFTER` s for the write lock: how long
        this process's oldest pending write has waited; else None."""
        since = self._connection.locked_out_since
        if since is None or time.monotonic() - since < LOCKED_OUT_AFTER:
            return None
        return self._writer.oldest_wait()

    async def snapshot(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`body` on a copy of the database taken with SQLite's online backup API (the
        writers carry on meanwhile), in a temporary file beside the database."""
        call = functools.partial(_on_copy, self.engine, body, *args, **kwargs)
        async with translate_errors():
            return await asyncio.get_running_loop().run_in_executor(self._readers, call)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._shut_down)

    def _shut_down(self) -> None:
        self._writer.shutdown()
        self._connection.close()
        self._readers.shutdown(wait=True)
        self.engine.dispose()
        if self._turn is not None:
            self._turn.close()
