"""A relay's sessions, counted across the delivery processes of one `outbox serve`.

A relay's `max_connections` (or, while it is throttled, its governor's lower
limit) bounds the sessions open to it from serve's delivery processes together,
not from each. A session holds a slot: an exclusive `flock` on one of the
relay's numbered files in a directory the processes share
(`SharedSessions`). The kernel lets go of a process's locks when it dies, even
by `kill -9`, so no slot outlives its holder and nothing must be swept.

Fair shares: each process may hold `ceil(limit / processes)` sessions. A
process with mail waiting for a session marks that it waits, and, while it
holds less than its share, that it is owed (each a `flock` on a file of its
own, which the others try). While another process is owed, a process at or past
its share takes no free slot, nor one that has just given one up (so a relay of
one session alternates between the processes as sessions end, rather than
staying with the quicker), and one past its share gives a session back when it
returns it to its pool (it looks whether another is owed one at most every
`OWED_LOOK`). While another process waits, a process gives up its
idle sessions (`SessionPool` looks every `IDLE_LOOK`). Otherwise any process may
use every slot: a lone process is not held to its share.

Without a shared directory (`serve` delivering itself, `processes = 1`, an
`outbox worker` started on its own) the pool's own count is the bound and
these slots bound nothing. Nor do they once the shared files cannot be used (the
directory gone, no descriptors left): that is logged once, and delivery goes on
with this process's own count rather than stopping.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from outbox.flocks import try_flock

log = structlog.get_logger("outbox.delivery")

FILE_MODE = 0o600
SLOT_POLL = 0.02  # seconds between a waiting process's looks for a free slot
# Seconds a process leaves a slot it freed to one that is owed: two of the other's looks.
YIELD_AFTER_RELEASE = 2 * SLOT_POLL
# Seconds a look at whether another process is owed a slot serves a process past its
# share as its sessions come back: looked at each time, it was two `flock` calls a message
# and 3 % of a delivery process's event loop (py-spy, http-lean, issue 15). A session
# given back to an owed process comes free at most this much later: half the time
# between its looks for a free slot.
OWED_LOOK = SLOT_POLL / 2


@dataclass(frozen=True, slots=True)
class SharedSessions:
    """Where the delivery processes of one serve count their relay sessions."""

    directory: Path
    processes: int  # how many share the slots
    number: int  # this one's, from 1


@dataclass(frozen=True, slots=True)
class Slot:
    index: int  # -1: not counted across processes


UNCOUNTED = Slot(-1)


class SessionSlots:
    """The slots of one relay in this process; `limit`: the relay's current session
    limit (its max_connections, lower while its governor throttles it)."""

    def __init__(self, relay: str, limit: Callable[[], int],
                 shared: SharedSessions | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._relay = relay
        self._limit = limit
        self._shared = shared
        self._clock = clock
        self._held: set[int] = set()
        self._waiting = 0  # this process's sessions waiting for a slot
        self._released_at = float("-inf")
        self._owed_seen: tuple[float, bool] = (float("-inf"), False)  # when looked, what seen
        self._files: dict[int, int] = {}  # slot index -> descriptor (open while we run)
        self._flags: list[_Flag] = []
        if shared is not None:
            self._base = shared.directory / hashlib.sha256(relay.encode()).hexdigest()[:16]
            self._owed = _Flag(self._base.with_suffix(".owed"), shared)
            self._wants = _Flag(self._base.with_suffix(".waiting"), shared)
            self._flags = [self._owed, self._wants]
            try:
                shared.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._unshare(exc)

    @property
    def is_shared(self) -> bool:
        return self._shared is not None

    @property
    def held(self) -> int:
        return len(self._held)

    def try_acquire(self) -> Slot | None:
        """A free slot; None when every slot is held, or when another process is owed
        one and this one holds its share or has just freed a slot."""
        if self._shared is None:
            return UNCOUNTED
        try:
            return self._take_free_slot()
        except OSError as exc:
            self._unshare(exc)
            return UNCOUNTED

    def gives_back(self, slot: Slot) -> bool:
        """Whether the session holding `slot` should close rather than wait idle: its
        slot is past the relay's current limit, or another process waits for its share
        of slots while this one holds more than its own."""
        if self._shared is None:
            return False
        if slot.index >= self._limit():
            return True
        self._mark()
        if self._shared is None:  # the mark found the shared files unusable
            return False
        try:
            return self.held > self._share() and self._owed_elsewhere()
        except OSError as exc:
            self._unshare(exc)
            return False

    def wanted_elsewhere(self) -> bool:
        """Another process has mail waiting for a session to the relay (and none here
        does): this one's idle sessions are better given up."""
        if self._shared is None or self._waiting:
            return False
        try:
            return self._wants.raised_elsewhere()
        except OSError as exc:
            self._unshare(exc)
            return False

    def release(self, slot: Slot) -> None:
        if slot.index in self._held:
            self._held.discard(slot.index)
            fcntl.flock(self._files[slot.index], fcntl.LOCK_UN)
            self._released_at = self._clock()
            self._mark()

    def wait_begins(self) -> None:
        """A session here waits for a slot: marks that this process waits (and is owed,
        while it holds less than its share). Each is followed by one `wait_ends`."""
        self._waiting += 1
        self._mark()

    def wait_ends(self) -> None:
        self._waiting -= 1
        self._mark()

    def close(self) -> None:
        for descriptor in self._files.values():
            os.close(descriptor)  # and with it any lock it held
        self._files.clear()
        self._held.clear()
        self._close_flags()

    # -- shares and demand ---------------------------------------------------------------

    def _share(self) -> int:
        processes = self._shared.processes if self._shared is not None else 1
        return max(1, math.ceil(self._limit() / processes))

    def _take_free_slot(self) -> Slot | None:
        self._mark()  # the limit may have changed our share
        if self._shared is None:  # the mark found the shared files unusable
            return UNCOUNTED
        if (self.held >= self._share() or self._just_released()) and (
                self._owed.raised_elsewhere()):
            return None
        for index in range(self._limit()):
            if index not in self._held and try_flock(self._file(index), fcntl.LOCK_EX):
                self._held.add(index)
                self._mark()
                return Slot(index)
        return None

    def _unshare(self, exc: OSError) -> None:
        """Count this process's sessions only (its pool's bound) from now on; slots
        already held are still given back as their sessions close."""
        if self._shared is None:
            return
        log.warning("cannot count the relay's sessions with serve's other delivery "
                    "processes; this process keeps to max_connections on its own",
                    relay=self._relay, error=str(exc))
        self._shared = None
        self._close_flags()

    def _close_flags(self) -> None:
        for flag in self._flags:
            flag.close()
        self._flags = []

    def _owed_elsewhere(self) -> bool:
        """Whether another process is owed a slot, as seen at most OWED_LOOK ago."""
        now = self._clock()
        looked_at, owed = self._owed_seen
        if now - looked_at >= OWED_LOOK:
            owed = self._owed.raised_elsewhere()
            self._owed_seen = (now, owed)
        return owed

    def _just_released(self) -> bool:
        return self._clock() - self._released_at < YIELD_AFTER_RELEASE

    def _mark(self) -> None:
        """Owed exactly while a session here waits and we hold less than our share."""
        if self._shared is None:
            return
        try:
            self._owed.set(self._waiting > 0 and self.held < self._share())
            self._wants.set(self._waiting > 0)
        except OSError as exc:
            self._unshare(exc)

    def _file(self, index: int) -> int:
        if index not in self._files:
            self._files[index] = _open(self._base.with_suffix(f".{index}"))
        return self._files[index]


class _Flag:
    """A mark each process raises for the others: an exclusive `flock` on a file of
    its own (`<path>.<number>`), seen by the others' try for one."""

    def __init__(self, path: Path, shared: SharedSessions) -> None:
        self._path = path
        self._own = shared.number
        self._others = [n for n in range(1, shared.processes + 1) if n != shared.number]
        self._descriptors: dict[int, int] = {}  # process number -> descriptor
        self._raised = False

    def set(self, raised: bool) -> None:
        if raised and not self._raised:
            # Fails only while another process looks (an instant); the next look marks it.
            self._raised = try_flock(self._file(self._own), fcntl.LOCK_EX)
        elif not raised and self._raised:
            fcntl.flock(self._file(self._own), fcntl.LOCK_UN)
            self._raised = False

    def raised_elsewhere(self) -> bool:
        for number in self._others:
            descriptor = self._file(number)
            if not try_flock(descriptor, fcntl.LOCK_EX):
                return True
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        for descriptor in self._descriptors.values():
            os.close(descriptor)
        self._descriptors.clear()
        self._raised = False

    def _file(self, number: int) -> int:
        if number not in self._descriptors:
            self._descriptors[number] = _open(self._path.with_name(
                f"{self._path.name}.{number}"))
        return self._descriptors[number]


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
