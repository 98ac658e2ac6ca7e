"""SQLite's liveness locks (`store.liveness`): a lock file per owner in `<database
file>-workers/`, `flock`ed for the owner's lifetime; the kernel lets go of it when the
process dies, even by `kill -9`. Each file says who holds it: its owner, then the
process (`describe_process`). `outbox restore` holds `.restore` there while it runs.

A killed process's file stays, free. At each start (`runtime.presence`) `left_behind`
names the owners of free files, the process reads which owners hold claims, and
`forget` removes the files of the others (a claim's owner keeps its file until
recovery, which needs it to prove the owner dead, has its claims back). In that order,
a claim made before the owner died is read: a free file's owner is dead.

No live process's file is removed. `_remove_if_free` unlinks a file only while it
holds its lock and only if that file is still at its path once locked; an owner holds
its lock only on the file still at its path once locked (`_take`), and a remover
would need that lock too. A process that creates its file just as a remover finds it
free may lock the unlinked file (flock locks what was opened, wherever the path
points now): it sees the path no longer names it, and makes a new one. Besides, only
files their owner has written are named, owner ids are never reused, and a file is
written only once locked: nobody is about to lock a path that is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import time
from collections.abc import Collection
from pathlib import Path

from outbox.errors import StorageError
from outbox.flocks import try_flock
from outbox.store.base_liveness import UNDESCRIBED, label

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
RESTORE_FILE = ".restore"  # the restore's lock file (not a `*.lock`: it has no owner)
RESTORE_TAKE_FOR = 1.0  # seconds a restore tries for its file (a start looks at it briefly)
TAKE_TRIES = 10  # an owner's file removed as it was made: make it again, this many times


class LockFiles:
    """SQLite: `flock` on one file per owner; the kernel releases it at death."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: dict[str, int] = {}  # owner -> open descriptor holding the lock
        self._restoring: int | None = None  # the descriptor holding RESTORE_FILE's lock
        self._label = label(UNDESCRIBED)

    def describe_process(self, what: str) -> None:
        self._label = label(what)

    def _path(self, owner: str) -> Path:
        return self.directory / f"{_UNSAFE.sub('_', owner)}.lock"

    async def register(self, owner: str) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = _take(self._path(owner))
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
            _remove_if_free(self._path(owner))

    async def left_behind(self) -> set[str]:
        # A file not written yet is a process between its open and its lock: skipped
        # (left too if that process died there). One written was locked by its owner,
        # so free now it is a dead owner's; owners are never reused.
        found = set()
        for path in self.directory.glob("*.lock"):
            owner = _owner_in(path)
            if owner and path == self._path(owner) and owner not in self._held \
                    and _is_held(path) is False:
                found.add(owner)
        return found

    async def begin_restore(self) -> str | None:
        path = self.directory / RESTORE_FILE
        deadline = time.monotonic() + RESTORE_TAKE_FOR
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                if try_flock(fd, fcntl.LOCK_EX):
                    break
                os.close(fd)
                if time.monotonic() >= deadline:  # held longer than a look: a restore
                    return _restore_label_in(path)
                await asyncio.sleep(0.01)
        except OSError as exc:
            raise StorageError(f"cannot take the restore's lock file {path}: "
                               f"{exc.strerror or exc}",
                               hint="the directory next to the database must be writable") \
                from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{self._label}\n".encode())
        self._restoring = fd
        return None

    async def end_restore(self) -> None:
        fd, self._restoring = self._restoring, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # the next restore's name, not this one's, once held
            os.close(fd)

    async def restore_holder(self) -> str | None:
        path = self.directory / RESTORE_FILE
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None  # no restore ever ran here
        except OSError as exc:
            raise StorageError(f"cannot read the restore's lock file {path}: "
                               f"{exc.strerror or exc}") from exc
        try:
            # Shared: starting processes looking at once do not take each other for one.
            return None if try_flock(fd, fcntl.LOCK_SH) else _restore_label_in(path)
        finally:
            os.close(fd)

    async def unregister(self, owner: str) -> None:
        fd = self._held.pop(owner, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                self._path(owner).unlink()
            os.close(fd)


def _lines(path: Path) -> list[str]:
    """The lock file's lines (none if it cannot be read, or is not written yet)."""
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _label_in(path: Path) -> str:
    """What holds the lock file at `path`, as it wrote there."""
    lines = _lines(path)
    if len(lines) > 1 and lines[1]:
        return lines[1]
    # Written by an older Outbox, or not yet (between its flock and its write).
    return f"{UNDESCRIBED} ({lines[0]})" if lines and lines[0] else f"{UNDESCRIBED}, starting"


def _owner_in(path: Path) -> str:
    """The owner the lock file at `path` names (its first line); "" if none yet."""
    return next(iter(_lines(path)), "").strip()


def _restore_label_in(path: Path) -> str:
    # Empty between the restore's flock and its write.
    return next(iter(_lines(path)), "") or "outbox restore, starting"


def _take(path: Path) -> int:
    """An open descriptor holding the lock of the file at `path` (made if missing).
    `_remove_if_free` may unlink a file between its creation and its lock: a lock on
    that file would be one nobody sees, so the file must still be at `path` once
    locked (it cannot be removed after that: removing takes the lock first)."""
    for _ in range(TAKE_TRIES):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _is_at(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OSError(f"{path} was removed each time it was made")


def _is_at(fd: int, path: Path) -> bool:
    """Whether the file open as `fd` is the one at `path` now."""
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _remove_if_free(path: Path) -> bool:
    """Remove the lock file at `path` if no process holds its lock; True if removed.
    Unlinked with its lock held, and only if still at `path` once locked (another may
    have removed it, and a new owner made a file there, between the open and the lock),
    so a process can neither hold the lock of a file removed under it nor lose its own
    file: it holds the lock of the file at its path (`_take`), and the lock is ours."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        if not try_flock(fd, fcntl.LOCK_EX) or not _is_at(fd, path):
            return False
        path.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


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
