"""SQLite: serve's delivery processes write through serve's writer thread
(store/sqlite_shared.py), and fall back to their own turn where that cannot be."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from outbox.errors import Conflict, NotFound, StorageError
from outbox.store.base import Store
from outbox.store.sqlite_shared import WRITER_ENV, SharedWriter
from tests.contract.support import T0, new_message

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


# Transaction bodies a delivery process might send: module-level, so they travel.

def _count_messages(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM messages")).scalar_one())


def _insert_without_an_id(conn: Connection) -> None:
    conn.execute(text("INSERT INTO messages (id) VALUES (NULL)"))


def _read_a_missing_table(conn: Connection) -> None:
    conn.execute(text("SELECT * FROM no_such_table"))


def _raise_not_found(conn: Connection) -> None:
    raise NotFound("no message abc")


def _slow_count(conn: Connection, seconds: float) -> int:
    time.sleep(seconds)
    return _count_messages(conn)


def _writer_started(store: Store) -> bool:
    """Whether `store`'s own writer thread has run a write (it starts at the first)."""
    return store._run._writer._thread is not None  # type: ignore[attr-defined]


async def _serve_and_child(store: Store, open_stores: Any,
                           monkeypatch: pytest.MonkeyPatch) -> Store:
    """`store` shares its writer (as serve does); a second store opened as one of serve's
    delivery processes opens it."""
    for name, value in store.share_writes().items():
        monkeypatch.setenv(name, value)
    child: Store = await open_stores()
    return child


@SQLITE_ONLY
async def test_a_delivery_process_s_claims_and_records_are_written_by_serve_s_writer(
        store: Store, open_stores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    child = await _serve_and_child(store, open_stores, monkeypatch)
    await store.messages.enqueue(new_message(id="m1"))

    (claim,) = await child.messages.claim_due("worker-1", T0 + timedelta(seconds=1),
                                              T0 + timedelta(minutes=5), 10)
    renewed = await child.messages.renew_leases("worker-1", [claim.token],
                                                T0 + timedelta(minutes=6))

    assert claim.message.id == "m1"
    assert renewed == 1
    assert not _writer_started(child), "the delivery process wrote in its own turn"
    detail = await store.messages.get("m1")
    assert detail.message.status.value == "sending"


@SQLITE_ONLY
async def test_without_serve_s_environment_a_process_writes_in_its_own_turn(
        store: Store, open_stores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `outbox worker` started by hand, or one on another database file."""
    address, _, _ = store.share_writes()[WRITER_ENV].partition(" ")
    monkeypatch.setenv(WRITER_ENV, f"{address} /elsewhere/outbox.db")
    other = await open_stores()
    await other.messages.enqueue(new_message(id="m1"))
    assert await other._run.write(_count_messages) == 1  # type: ignore[attr-defined]
    assert _writer_started(other)


@SQLITE_ONLY
async def test_a_write_that_cannot_travel_is_written_in_the_process_s_own_turn(
        store: Store, open_stores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    child = await _serve_and_child(store, open_stores, monkeypatch)
    wanted = 3

    def closure(conn: Connection) -> int:  # a local function: pickle refuses it
        return _count_messages(conn) + wanted

    assert await child._run.write(_count_messages) == 0  # type: ignore[attr-defined]
    assert not _writer_started(child)
    assert await child._run.write(closure) == 3  # type: ignore[attr-defined]
    assert _writer_started(child)


@SQLITE_ONLY
async def test_a_shared_write_s_errors_arrive_as_a_local_write_s_would(
        store: Store, open_stores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    child = await _serve_and_child(store, open_stores, monkeypatch)
    runner = child._run  # type: ignore[attr-defined]

    with pytest.raises(Conflict, match="NOT NULL"):
        await runner.write(_insert_without_an_id)
    with pytest.raises(StorageError, match="no such table"):
        await runner.write(_read_a_missing_table)
    with pytest.raises(NotFound, match="no message abc"):
        await runner.write(_raise_not_found)
    assert await runner.write(_count_messages) == 0  # the connection is still in use
    assert not _writer_started(child)


@SQLITE_ONLY
async def test_when_serve_s_writer_goes_a_write_under_way_fails_and_the_next_goes_local(
        store: Store, open_stores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    child = await _serve_and_child(store, open_stores, monkeypatch)
    runner = child._run  # type: ignore[attr-defined]
    assert await runner.write(_count_messages) == 0  # connected
    shared: SharedWriter = store._run._shared  # type: ignore[attr-defined]

    under_way = asyncio.create_task(runner.write(_slow_count, 0.5))
    await asyncio.sleep(0.1)
    shared.close()  # as when serve is gone
    with pytest.raises(StorageError, match="may or may not have been committed"):
        await asyncio.wait_for(under_way, 10)

    await store.messages.enqueue(new_message(id="m1"))
    assert await runner.write(_count_messages) == 1
    assert _writer_started(child)


# Sends one frame to serve's writer that, unpickled, creates the file named in argv[2].
_INTRUDER = """
import pickle, socket, struct, sys
class Touch:
    def __reduce__(self):
        return (open, (sys.argv[2], "w"))
data = pickle.dumps(Touch())
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.connect("\\0" + sys.argv[1])
    try:
        sock.sendall(struct.pack("!I", len(data)) + data)
        sock.settimeout(10)
        answer = sock.recv(1)
    except (BrokenPipeError, ConnectionResetError):  # closed before it was all sent
        answer = b""
    sys.exit(0 if answer == b"" else 3)  # closed without an answer
"""


@SQLITE_ONLY
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_serve_s_writer_unpickles_nothing_from_another_user(store: Store,
                                                            tmp_path: Path) -> None:
    address, _, _ = store.share_writes()[WRITER_ENV].partition(" ")
    python = os.path.realpath(sys.executable)

    unpickled = tmp_path / "unpickled-from-nobody"
    intruder = subprocess.run([python, "-I", "-c", _INTRUDER, address, str(unpickled)],
                              user=65534, timeout=30, capture_output=True)
    assert intruder.returncode == 0, intruder.stderr.decode()
    assert not unpickled.exists()

    # The same bytes from this user are unpickled: what stopped them above is the check.
    unpickled = tmp_path / "unpickled-from-the-same-user"
    subprocess.run([python, "-I", "-c", _INTRUDER, address, str(unpickled)], timeout=30,
                   capture_output=True)
    deadline = time.monotonic() + 10
    while not unpickled.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert unpickled.exists()


@SQLITE_ONLY
async def test_a_malformed_frame_ends_that_connection_only(
        store: Store, open_stores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    child = await _serve_and_child(store, open_stores, monkeypatch)
    address, _, _ = store.share_writes()[WRITER_ENV].partition(" ")
    data = pickle.dumps("not a call")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect("\0" + address)
        sock.sendall(struct.pack("!I", len(data)) + data)
        sock.settimeout(10)
        assert sock.recv(1) == b""

    assert await child._run.write(_count_messages) == 0  # type: ignore[attr-defined]
    assert not _writer_started(child)
