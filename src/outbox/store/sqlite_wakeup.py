"""`PeerWakeup`: wake-ups across the processes that share one SQLite file.

PostgreSQL has LISTEN/NOTIFY (`postgres.NotifyWakeup`); SQLite has nothing,
so without this a worker in another process (`outbox worker`, or a delivery
process of `outbox serve`) would only notice new mail at its poll interval.
The announcements of one turn of the event loop go out as one, at its end.
Each process that waits binds a datagram socket in Linux's abstract
namespace (no file to clean up, no path-length limit) and leaves a marker
file named after it in `<database file>-workers/`, beside the liveness lock
files. `announce()` sends one empty datagram to every other marker's socket;
a marker whose socket is gone (its process died) is removed. Where the
platform has no abstract sockets, waiters poll as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import sys
from pathlib import Path

import structlog

from outbox.store.sql.wakeup import Wakeup

log = structlog.get_logger("outbox.store")

SUPPORTED = sys.platform.startswith("linux")
MARKER_SUFFIX = ".wake"


class PeerWakeup(Wakeup):
    """In-process wake-ups, plus a datagram to every other waiting process."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self._prefix = "outbox-" + hashlib.sha256(str(directory).encode()).hexdigest()[:16]
        self._sender: socket.socket | None = None
        self._receiver: socket.socket | None = None
        self._marker: Path | None = None
        self._unable = not SUPPORTED  # then waiters poll, as they always could
        self._poke_pending = False  # an announcement waits for the end of this loop turn

    def announce(self, *, notified: bool = False) -> None:
        """Wake this process's waiters now, and the other processes once this turn of
        the event loop is over: the submits of one group commit each announce as they
        return, in the same turn, and each listed the peers' markers and sent each a
        datagram (about 10 us of the event loop per submit, measured alone)."""
        super().announce()
        if not SUPPORTED or self._poke_pending or notified:
            return
        self._poke_pending = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: at once
            self._poke_peers()
            return
        loop.call_soon(self._poke_peers)

    def _poke_peers(self) -> None:
        if not self._poke_pending:
            return  # close() sent this turn's announcement already
        self._poke_pending = False
        try:
            peers = [name for name in os.listdir(self.directory)
                     if name.endswith(MARKER_SUFFIX)]
        except OSError:
            return  # no process has waited yet
        for name in peers:
            if self._marker is None or name != self._marker.name:
                self._poke(name)

    def _poke(self, name: str) -> None:
        # Never raises: announce() runs after a commit, whose caller must not see an error.
        try:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            self._sender.sendto(b"", self._address(name))
        except BlockingIOError:
            pass  # its queue is full: it has been woken already
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(OSError):  # the process is gone: forget it
                (self.directory / name).unlink()
        except OSError as exc:
            log.debug("cannot wake another worker; it will poll", error=str(exc))

    def _address(self, marker: str) -> bytes:
        return f"\0{self._prefix}-{marker.removesuffix(MARKER_SUFFIX)}".encode()

    async def listen(self) -> None:
        if self._receiver is not None or self._unable:
            return
        marker = self.directory / f"{os.getpid()}-{os.urandom(4).hex()}{MARKER_SUFFIX}"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            receiver.setblocking(False)
            receiver.bind(self._address(marker.name))
            self.directory.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError as exc:
            receiver.close()
            log.warning("cannot listen for new mail from other processes; polling instead",
                        error=str(exc))
            self._unable = True
            return
        asyncio.get_running_loop().add_reader(receiver.fileno(), self._on_datagram)
        self._receiver, self._marker = receiver, marker

    def _on_datagram(self) -> None:
        assert self._receiver is not None
        with contextlib.suppress(OSError):
            while True:
                self._receiver.recv(1)
        self._event.set()

    async def close(self) -> None:
        if self._poke_pending:  # an announcement of this last turn still goes out
            self._poke_peers()
        if self._receiver is not None:
            asyncio.get_running_loop().remove_reader(self._receiver.fileno())
            self._receiver.close()
            self._receiver = None
        if self._marker is not None:
            with contextlib.suppress(OSError):
                self._marker.unlink()
            self._marker = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
