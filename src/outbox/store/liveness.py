"""Which claim owners are alive: a lock each process holds for its lifetime,
that the operating system or the database server lets go the moment the
process dies, so others can tell "dead" from "slow" without waiting for a
lease.

    SQLite (one host)      a lock file per process (`flock`) in
                           `<database file>-workers/`
    PostgreSQL (nodes)     a session-level advisory lock on a dedicated
                           connection; the server drops it with the session

Each lock also says what holds it (`describe_process`): the lock file's second line,
the session's application_name. `outbox restore` names them when it refuses.

A PostgreSQL restart drops every session, so for a moment every owner looks
dead while it reconnects: for `RESTART_GRACE` after the server started, no
owner is taken for dead (a live one takes its lock again within a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import socket
from collections.abc import Collection
from pathlib import Path
from typing import Any

import structlog

from outbox.errors import StorageError

log = structlog.get_logger("outbox.liveness")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
LOCK_NAMESPACE = 0x0B0C  # classid of Outbox's advisory locks (the migration lock is xact-level)
RESTART_GRACE = 5.0  # seconds after a PostgreSQL start during which nobody is provably dead
CONNECT_TIMEOUT = 10.0
QUERY_TIMEOUT = 5.0
UNDESCRIBED = "an Outbox process"


def label(what: str) -> str:
    """`what` with this process's pid and host: what other processes see."""
    return f"{what}, pid {os.getpid()} on {socket.gethostname()}"


class LockFiles:
    """SQLite: `flock` on one file per owner; the kernel releases it at death."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: dict[str, int] = {}  # owner -> open descriptor holding the lock
        self._label = label(UNDESCRIBED)

    def describe_process(self, what: str) -> None:
        self._label = label(what)

    def _path(self, owner: str) -> Path:
        return self.directory / f"{_UNSAFE.sub('_', owner)}.lock"

    async def register(self, owner: str) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path(owner), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise StorageError(f"cannot take this process's lock file in {self.directory}: "
                               f"{exc.strerror or exc}",
                               hint="the directory next to the database must be writable") \
                from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{owner}\n{self._label}\n".encode())
        self._held[owner] = fd

    async def keep(self, owner: str) -> None:
        """Nothing to renew: the lock lasts as long as the descriptor."""

    async def dead(self, owners: Collection[str]) -> set[str]:
        # No file: not provable (a process that never took one), so its lease decides.
        return {owner for owner in owners
                if owner not in self._held and _is_held(self._path(owner)) is False}

    async def holders(self) -> list[str]:
        mine = {self._path(owner) for owner in self._held}
        return sorted({_label_in(path) for path in self.directory.glob("*.lock")
                       if path not in mine and _is_held(path)})

    async def count_alive(self) -> int:
        return len(await self.holders())

    async def forget(self, owners: Collection[str]) -> None:
        """Remove the lock files of dead owners once their claims are recovered."""
        for owner in owners:
            with contextlib.suppress(OSError):
                self._path(owner).unlink()

    async def unregister(self, owner: str) -> None:
        fd = self._held.pop(owner, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                self._path(owner).unlink()
            os.close(fd)


def _label_in(path: Path) -> str:
    """What holds the lock file at `path`, as it wrote there."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    if len(lines) > 1 and lines[1]:
        return lines[1]
    # Written by an older Outbox, or not yet (between its flock and its write).
    return f"{UNDESCRIBED} ({lines[0]})" if lines and lines[0] else f"{UNDESCRIBED}, starting"


def _is_held(path: Path) -> bool | None:
    """Whether a process holds the lock file at `path`; None: there is no such file."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing also lets go of the lock just taken
    return False


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

    async def _locks(self, query: str, what: str) -> tuple[float, list[Any]]:
        """(seconds since the server started, `query`'s rows for Outbox's lock namespace);
        `what` the query finds, for the error."""
        async with self._in_use:
            conn = await self._connection()
            try:
                up = await conn.fetchval("SELECT extract(epoch FROM now() - "
                                         "pg_postmaster_start_time())", timeout=QUERY_TIMEOUT)
                rows = await conn.fetch(query, LOCK_NAMESPACE, timeout=QUERY_TIMEOUT)
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
