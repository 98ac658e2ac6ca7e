"""`SharedWriter` and `RemoteWriter`: the delivery processes of `outbox serve` write
through serve's own SQLite writer thread (issue 15).

Each process that shares a SQLite file writes in its own turn (`sqlite_turn.py`). At
500 submits a second with one delivery process, the file's write lock was busy about
60 % of the time, and a submit's group commit waited for the delivery process's
transaction under way: 1.7 ms p50 and 9.8 ms p99, on top of a `BEGIN IMMEDIATE` and
statements that each re-read pages the other process's commit had made stale (stop
49's note). Here serve shares its writer thread: a delivery process sends each write
(its transaction body, a module-level function, and its plain arguments) over a
Unix socket, serve's writer runs it as one of its own, after the writes a client
waits on, and sends back the result or the error. A delivery process's write still
returns only once it is committed.

Serve listens on an abstract socket (Linux; no file to clean up) named in the
children's environment (`WRITER_ENV`) and takes connections from processes of its
own user only (`SO_PEERCRED`): what arrives is unpickled. A call whose body or
arguments cannot be pickled (a closure, a bound method) is written in the process's
own turn, as every write was before; so is every write once the connection is lost,
and every write where serve shares nothing (an `outbox worker` started by hand). A
write under way when the connection is lost fails with `StorageError`, as a write
whose database connection failed: it may or may not have been committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import queue
import socket
import struct
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import structlog

from outbox.errors import StorageError
from outbox.ids import random_hex
from outbox.store.sql.runner import translated

log = structlog.get_logger("outbox.store")

# Set for serve's delivery processes: "<serve's address> <the database file's path>".
WRITER_ENV = "OUTBOX_SQLITE_WRITER"
SUPPORTED = sys.platform.startswith("linux")
_LENGTH = struct.Struct("!I")
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid

# The writer's side: run `call` (a whole transaction) after the urgent writes.
Submit = Callable[[bool, Callable[..., Any], tuple[Any, ...], dict[str, Any]], "Future[Any]"]


class NotShared(Exception):
    """This write cannot go to serve's writer: it is written in this process's turn."""


def _frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _portable_error(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling whole, else a `StorageError` that says what it was."""
    try:
        again = pickle.loads(pickle.dumps(exc))
        if type(again) is type(exc) and str(again) == str(exc):
            return exc
    except Exception:  # what cannot be copied is described instead
        pass
    return StorageError(f"database error in serve's writer: {type(exc).__name__}: {exc}")


class SharedWriter:
    """Serve's side: takes the writes of its delivery processes for its writer thread."""

    def __init__(self, submit: Submit, database: str) -> None:
        self._submit = submit
        self.address = f"outbox-writer-{os.getpid()}-{random_hex(8)}"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(b"\0" + self.address.encode())
        self._listener.listen(16)
        self.environment = {WRITER_ENV: f"{self.address} {database}"}
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="outbox-sqlite-shared", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = list(self._connections)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept()
        self._listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            pid, uid, _ = _CREDENTIALS.unpack(
                conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size))
            if uid != os.geteuid():  # unpickling runs code: the same user's processes only
                log.warning("refused a connection to the shared writer from another user",
                            pid=pid, uid=uid)
                conn.close()
                continue
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._connections.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name=f"outbox-sqlite-shared-{pid}").start()

    def _serve(self, conn: socket.socket) -> None:
        """Reads calls until the connection ends; a sender thread writes the answers, so
        the writer thread never waits for a slow reader."""
        answers: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        sender = threading.Thread(target=_send_all, args=(conn, answers), daemon=True,
                                  name=f"{threading.current_thread().name}-answers")
        sender.start()
        try:
            with conn.makefile("rb") as incoming:
                while (header := incoming.read(_LENGTH.size)) and len(header) == _LENGTH.size:
                    (size,) = _LENGTH.unpack(header)
                    number, urgent, body, args, kwargs = pickle.loads(incoming.read(size))
                    self._run(number, urgent, body, args, kwargs, answers)
        except Exception as exc:  # a connection lost, or a frame that is not a call
            log.warning("a connection to the shared writer failed",
                        error=f"{type(exc).__name__}: {exc}")
        finally:
            answers.put(None)
            sender.join()
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _run(self, number: int, urgent: bool, body: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any], answers: queue.SimpleQueue[bytes | None]) -> None:
        def answer(done: Future[Any]) -> None:
            exc = done.exception()
            if exc is None:
                answers.put(_frame((number, True, done.result())))
            else:
                answers.put(_frame((number, False, _portable_error(translated(exc)))))

        try:
            future = self._submit(urgent, body, args, kwargs)
        except RuntimeError as exc:  # the writer has shut down (serve is stopping)
            answers.put(_frame((number, False, StorageError(str(exc)))))
            return
        future.add_done_callback(answer)


def _send_all(conn: socket.socket, answers: queue.SimpleQueue[bytes | None]) -> None:
    while (answer := answers.get()) is not None:
        try:
            conn.sendall(answer)
        except OSError:
            return  # the reader sees the connection end too


def remote_writer(database: str) -> RemoteWriter | None:
    """The way to serve's writer where this process is one of serve's delivery processes
    and uses the same database file; None anywhere else."""
    address, _, shared = os.environ.get(WRITER_ENV, "").partition(" ")
    if not (SUPPORTED and address and shared == database):
        return None
    return RemoteWriter(address)


class RemoteWriter:
    """A delivery process's side: sends its writes to serve's writer (`WRITER_ENV`)."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._numbers = 0
        self._broken = False
        self._connecting = asyncio.Lock()

    async def write(self, urgent: bool, body: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        """`body(conn, *args, **kwargs)` committed by serve's writer; `NotShared` when it
        is this process's to write instead."""
        loop = asyncio.get_running_loop()
        if self._broken or (self._loop is not None and loop is not self._loop):
            raise NotShared  # gone, or called from another event loop than the first
        self._numbers += 1
        number = self._numbers
        try:
            frame = _frame((number, urgent, body, args, kwargs))
        except Exception as exc:  # a closure, a bound method, a lock: not portable
            raise NotShared from exc
        writer = await self._connected()
        answer = loop.create_future()
        self._waiting[number] = answer
        writer.write(frame)
        try:
            ok, value = await answer
        finally:
            self._waiting.pop(number, None)
        if ok:
            return value
        raise value

    async def _connected(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            if self._broken:
                raise NotShared
            try:
                # Connected here, then handed over: uvloop refuses an abstract address.
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.setblocking(False)
                    await asyncio.get_running_loop().sock_connect(
                        sock, b"\0" + self._address.encode())
                    reader, writer = await asyncio.open_unix_connection(sock=sock)
                except BaseException:
                    sock.close()
                    raise
            except OSError as exc:
                self._give_up(f"cannot reach serve's writer: {exc}")
                raise NotShared from exc
            self._loop, self._writer = asyncio.get_running_loop(), writer
            self._reading = asyncio.create_task(self._read(reader))
            return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                number, ok, value = pickle.loads(await reader.readexactly(size))
                answer = self._waiting.get(number)
                if answer is not None and not answer.done():
                    answer.set_result((ok, value))
        except (OSError, EOFError, asyncio.IncompleteReadError, pickle.UnpicklingError) as exc:
            self._give_up(f"lost the connection to serve's writer: {type(exc).__name__}")

    def _give_up(self, why: str) -> None:
        """From now on this process writes in its own turn; writes under way fail."""
        if not self._broken:
            log.warning("writing to the database in this process's own turn", reason=why)
        self._broken = True
        lost = StorageError(f"{why}; the write may or may not have been committed",
                            hint="nothing to do: the lease of a claim lost this way "
                                 "expires and the mail is tried again")
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_result((False, lost))
        if self._writer is not None:
            self._writer.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
