"""SQLite's liveness lock files (`store.liveness_files`): a killed process's file is
named by `left_behind` and removed by `forget`; a live process's never is, not even
one being made at that moment. PostgreSQL leaves nothing behind (a dead session's lock
is gone with it)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from outbox.store.base import Store
from outbox.store.liveness_files import _remove_if_free
from tests.contract.test_store_liveness import _start_holder

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


def _directory(db_url: str) -> Path:
    return Path(db_url.removeprefix("sqlite:///") + "-workers")


def _files(db_url: str) -> set[str]:
    return {path.name for path in _directory(db_url).glob("*.lock")}


@SQLITE_ONLY
async def test_a_killed_processs_file_is_left_behind_until_forgotten(
        store: Store, db_url: str) -> None:
    killed = await _start_holder(db_url, "host:1:killed")
    live = await _start_holder(db_url, "host:2:live")
    try:
        assert await store.liveness.left_behind() == set()
        os.killpg(killed.pid, signal.SIGKILL)
        await killed.wait()
        assert _files(db_url) == {"host_1_killed.lock", "host_2_live.lock"}
        assert await store.liveness.left_behind() == {"host:1:killed"}
        await store.liveness.forget({"host:1:killed", "host:2:live"})  # the live one stays
        assert _files(db_url) == {"host_2_live.lock"}
        assert await store.liveness.left_behind() == set()
        assert await store.liveness.count_alive() == 1
    finally:
        os.killpg(live.pid, signal.SIGKILL)
        await live.wait()


@SQLITE_ONLY
async def test_a_file_its_process_has_not_locked_yet_is_not_left_behind(
        store: Store, db_url: str) -> None:
    """Between a process's open of its new file and its lock, the file is free."""
    directory = _directory(db_url)
    directory.mkdir(exist_ok=True)
    os.close(os.open(directory / "host_3_starting.lock", os.O_RDWR | os.O_CREAT, 0o600))
    assert await store.liveness.left_behind() == set()


# Registers owners one after the other, as fast as it can, until the file `stop` exists,
# and counts those whose lock is not on the file at their path once `register` returned:
# a lock nobody can see.
REGISTERING = """
import asyncio, os, sys
from pathlib import Path
from outbox.store.factory import open_store

async def main(url, stop):
    store = await open_store(url)
    liveness, unseen, done = store.liveness, 0, 0
    while not (done % 100 == 0 and Path(stop).exists()):
        owner = f"host:4:{done}"
        try:
            await liveness.register(owner)
        except Exception:
            continue  # the remover held the new file's lock for a moment: try again
        mine = os.fstat(liveness._held[owner])
        try:
            there = os.stat(liveness._path(owner))
            unseen += (there.st_ino, there.st_dev) != (mine.st_ino, mine.st_dev)
        except FileNotFoundError:
            unseen += 1
        await liveness.unregister(owner)
        done += 1
    print(done, unseen, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


REMOVING_FOR = 10.0  # seconds from the registering process's first file, once one is removed
GIVING_UP_AFTER = 60.0  # seconds in all


@SQLITE_ONLY
async def test_removing_free_files_as_processes_make_theirs_never_hides_a_live_lock(
        store: Store, db_url: str) -> None:
    """The worst case for a remover: every free file, written or not, removed in a loop
    while another process makes and locks new ones. A file removed between its open and
    its lock must not leave its process holding the lock of a file nobody sees."""
    directory = _directory(db_url)
    directory.mkdir(exist_ok=True)
    stop = directory.parent / "stop"
    registering = await asyncio.create_subprocess_exec(
        sys.executable, "-c", REGISTERING, db_url, str(stop), stdout=asyncio.subprocess.PIPE)
    # The time counts from the child's first file (on a loaded machine its start alone
    # took most of it), and goes on past REMOVING_FOR until one free file was removed:
    # with six CPU burners beside it, 1 to 3 were in 10 s.
    removed, give_up, deadline = 0, time.monotonic() + GIVING_UP_AFTER, None
    # Each removal of a file not yet locked is one race; ten make their point.
    while removed < 10 and time.monotonic() < give_up and not (
            removed and deadline is not None and time.monotonic() > deadline):
        found = list(directory.glob("*.lock"))
        if found and deadline is None:
            deadline = time.monotonic() + REMOVING_FOR
        removed += sum(_remove_if_free(path) for path in found)
    stop.touch()
    assert registering.stdout is not None
    done, unseen = map(int, (await registering.stdout.read()).split())
    print(f"\n{done} owners registered while {removed} free files were removed: "
          f"{unseen} locks on a removed file")
    assert done > 100 and removed > 0
    assert unseen == 0
