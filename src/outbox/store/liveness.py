"""Which claim owners are alive: a lock each process holds for its lifetime,
that the operating system or the database server lets go the moment the
process dies, so others can tell "dead" from "slow" without waiting for a
lease.

    SQLite (one host)      a lock file per process (`flock`) in
                           `<database file>-workers/` (`store.liveness_files`)
    PostgreSQL (nodes)     a session-level advisory lock on a dedicated
                           connection; the server drops it with the session

Each lock also says what holds it (`describe_process`): the lock file's second line,
the session's application_name. `outbox restore` names them when it refuses.

`outbox restore` holds a lock of its own from before it looks for those processes
until its last change (`service.archive`): the file `.restore` there, the advisory
lock (`RESTORE_NAMESPACE`, 0) here. A starting `serve`, `worker` or `submission`
looks for it only after taking its own liveness lock (`runtime.presence`). Each takes
its own lock before it looks for the other's and keeps it while it acts, and a lock
is seen by every look that starts once it is granted (flock; pg_locks). So a restore
that goes ahead, having found no liveness lock, holds its lock from before each
process took its own; each process looks after that, finds the restore's lock held,
and refuses. The window is closed, not narrowed: at worst both refuse (a start tries
again for a few seconds, long enough for a restore that is itself refusing).

A PostgreSQL restart drops every session, so for a moment every owner looks
dead while it reconnects: for `RESTART_GRACE` after the server started, no
owner is taken for dead (a live one takes its lock again within a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Collection
from typing import Any

import structlog

from outbox.errors import StorageError
from outbox.store.base_liveness import UNDESCRIBED, label
from outbox.store.liveness_files import LockFiles

__all__ = ["AdvisoryLocks", "LockFiles", "lock_key"]  # LockFiles: SQLite's, from its module

log = structlog.get_logger("outbox.liveness")

LOCK_NAMESPACE = 0x0B0C  # classid of Outbox's advisory locks (the migration lock is xact-level)
RESTORE_NAMESPACE = 0x0B0D  # classid of `outbox restore`'s advisory lock (key 0)
RESTART_GRACE = 5.0  # seconds after a PostgreSQL start during which nobody is provably dead
CONNECT_TIMEOUT = 10.0
QUERY_TIMEOUT = 5.0


class AdvisoryLocks:
    """PostgreSQL: `pg_advisory_lock(namespace, key)` held by a dedicated session.

    Closing that session releases the lock, and the other nodes then take this node's
    claims back as if it had died while it goes on delivering them: duplicates. So every
    use of the session is serialised (asyncpg runs one operation at a time on a
    connection), and it is closed only when it is gone anyway, never because one query
    failed or was slow on a loaded server."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: Any = None
        self._owners: set[str] = set()
        self._in_use = asyncio.Lock()
        self._label = label(UNDESCRIBED)

    def describe_process(self, what: str) -> None:
        """Used as the liveness session's application_name: set it before `register`."""
        self._label = label(what)

    async def register(self, owner: str) -> None:
        self._owners.add(owner)
        async with self._in_use:
            await self._lock_all()

    async def keep(self, owner: str) -> None:
        """Check the session still answers; after a lost connection (a server
        restart) connect again and take the lock again."""
        async with self._in_use:
            if self._conn is not None and not self._conn.is_closed():
                try:
                    await self._conn.fetchval("SELECT 1", timeout=QUERY_TIMEOUT)
                    return
                except Exception as exc:  # the session is gone whatever the driver called it
                    if not await self._drop_if_gone():
                        log.warning("the liveness session answered slowly; it is kept",
                                    owner=owner, error=str(exc) or type(exc).__name__)
                        return
            await self._lock_all()
        log.info("liveness lock taken again after the database connection was lost",
                 owner=owner)

    async def dead(self, owners: Collection[str]) -> set[str]:
        if not owners:
            return set()
        up, alive = await self._live_keys()
        if up < RESTART_GRACE:
            return set()  # the server just started: live nodes are still reconnecting
        return {owner for owner in owners if lock_key(owner) not in alive}

    async def holders(self) -> list[str]:
        up, found = await self._holding_sessions()
        if up < RESTART_GRACE:  # the server just started: live nodes are still reconnecting
            await asyncio.sleep(RESTART_GRACE - up)
            _, found = await self._holding_sessions()
        return sorted(found)

    async def count_alive(self) -> int:
        return len(await self.holders())

    async def left_behind(self) -> set[str]:
        return set()  # a dead session's lock is gone with it

    async def begin_restore(self) -> str | None:
        async with self._in_use:
            conn = await self._connection()
            try:
                taken = await conn.fetchval("SELECT pg_try_advisory_lock($1, 0)",
                                            RESTORE_NAMESPACE, timeout=QUERY_TIMEOUT)
            except Exception as exc:
                await self._drop_if_gone()
                raise StorageError(f"cannot take the restore's lock: {exc}") from exc
        if taken:
            return None
        return await self.restore_holder() or f"{UNDESCRIBED}, restoring"  # it just ended

    async def end_restore(self) -> None:
        async with self._in_use:
            if not self._owners:  # a restore holds no other lock: its session goes
                await self._drop()
            elif self._conn is not None and not self._conn.is_closed():
                with contextlib.suppress(Exception):
                    await self._conn.fetchval("SELECT pg_advisory_unlock($1, 0)",
                                              RESTORE_NAMESPACE, timeout=QUERY_TIMEOUT)

    async def restore_holder(self) -> str | None:
        _, rows = await self._locks(
            "SELECT l.pid, a.application_name FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = 0 "
            "AND l.objsubid = 2 AND l.granted AND l.pid <> pg_backend_pid() AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            "whether a restore runs", RESTORE_NAMESPACE)
        return next((row["application_name"] or f"outbox restore (database session "
                     f"{row['pid']})" for row in rows), None)

    async def _holding_sessions(self) -> tuple[float, set[str]]:
        """(seconds since the server started, what each other session holding a lock
        says it is). One session per process holds all that process's locks."""
        up, rows = await self._locks(
            "SELECT DISTINCT l.pid, a.application_name FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objsubid = 2 "
            "AND l.granted AND l.pid <> pg_backend_pid() AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            "which processes use the database")
        return up, {row["application_name"] or f"{UNDESCRIBED} (database session "
                    f"{row['pid']})" for row in rows}

    async def _live_keys(self) -> tuple[float, set[int]]:
        """(seconds since the server started, the keys of the locks held now)."""
        up, live = await self._locks(
            # Advisory locks belong to a database: another database on the server
            # (another Outbox, a test) may hold the same key for its own owner.
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
            "AND objsubid = 2 AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            "which workers are alive")
        return up, {int(row["objid"]) for row in live}

    async def _locks(self, query: str, what: str, namespace: int = LOCK_NAMESPACE
                     ) -> tuple[float, list[Any]]:
        """(seconds since the server started, `query`'s rows for the lock namespace);
        `what` the query finds, for the error."""
        async with self._in_use:
            conn = await self._connection()
            try:
                up = await conn.fetchval("SELECT extract(epoch FROM now() - "
                                         "pg_postmaster_start_time())", timeout=QUERY_TIMEOUT)
                rows = await conn.fetch(query, namespace, timeout=QUERY_TIMEOUT)
            except Exception as exc:
                await self._drop_if_gone()
                raise StorageError(f"cannot read {what}: {exc}") from exc
        return float(up), list(rows)

    async def forget(self, owners: Collection[str]) -> None:
        """Nothing to clean: a dead session's lock is gone with it."""

    async def unregister(self, owner: str) -> None:
        self._owners.discard(owner)
        if not self._owners:
            async with self._in_use:
                await self._drop()

    async def _lock_all(self) -> None:
        conn = await self._connection()
        for owner in sorted(self._owners):
            taken = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_NAMESPACE,
                                        lock_key(owner), timeout=QUERY_TIMEOUT)
            if not taken:
                raise StorageError(f"another process holds the liveness lock of {owner}")

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            import asyncpg  # only when PostgreSQL is used

            try:
                self._conn = await asyncpg.connect(
                    self._dsn, timeout=CONNECT_TIMEOUT,
                    server_settings={"application_name": self._label})
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                raise StorageError(f"cannot connect for the liveness lock: {exc}") from exc
        return self._conn

    async def _drop_if_gone(self) -> bool:
        """After a failed query: forget the session if it is closed (its lock went with
        it); True if so. One still open keeps its lock."""
        if self._conn is not None and not self._conn.is_closed():
            return False
        await self._drop()
        return True

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()


def lock_key(owner: str) -> int:
    """The owner's advisory-lock key: 31 bits of its SHA-256 (pg_locks shows it as objid)."""
    return int.from_bytes(hashlib.sha256(owner.encode()).digest()[:4], "big") & 0x7FFFFFFF
