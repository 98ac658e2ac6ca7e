"""store.liveness: a process's lock is held while it lives and let go the moment it
dies (kill -9), on both backends; other processes read that without waiting."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from outbox.store.base import Store
from tests.contract.conftest import OpenStore

HOLDER = """
import asyncio, sys
from outbox.store.factory import open_store

async def main(url, owner):
    store = await open_store(url)
    await store.liveness.register(owner)
    print("ready", flush=True)
    while True:
        await store.liveness.keep(owner)
        await asyncio.sleep(0.2)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _start_holder(url: str, owner: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, url, owner, stdout=asyncio.subprocess.PIPE,
        start_new_session=True)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line.strip() == b"ready"
    return process


async def _dead_within(store: Store, owner: str, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if await store.liveness.dead([owner]) == {owner}:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{owner} still looks alive after {seconds}s")


async def test_a_live_process_is_alive_and_dead_the_moment_it_is_killed(
        store: Store, db_url: str) -> None:
    holder = await _start_holder(db_url, "host:1:killed")
    try:
        assert await store.liveness.dead(["host:1:killed"]) == set()
        await asyncio.sleep(0.5)
        assert await store.liveness.dead(["host:1:killed"]) == set(), "still alive"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        await holder.wait()

    took = await _dead_within(store, "host:1:killed", 5.0)
    assert took < 5.0


async def test_this_processs_own_owner_is_alive_and_others_are_not_confused(
        store: Store, open_stores: OpenStore) -> None:
    other = await open_stores()
    await store.liveness.register("host:2:me")
    await other.liveness.register("host:3:other")
    try:
        assert await store.liveness.dead(["host:2:me", "host:3:other"]) == set()
        assert await other.liveness.dead(["host:2:me"]) == set()
        await store.liveness.keep("host:2:me")
    finally:
        await store.liveness.unregister("host:2:me")
        await other.liveness.unregister("host:3:other")


async def test_an_owner_whose_process_stopped_cleanly_holds_nothing_afterwards(
        store: Store, db_url: str) -> None:
    holder = await _start_holder(db_url, "host:4:stopped")
    holder.send_signal(signal.SIGTERM)  # no clean-up code runs: like a crash
    await holder.wait()
    await _dead_within(store, "host:4:stopped", 5.0)
    await store.liveness.forget(["host:4:stopped"])


async def test_count_alive_counts_other_live_processes_and_forgets_dead_ones(
        store: Store, db_url: str) -> None:
    """What `outbox restore` asks: none before anything runs, a live process counted
    (this store's own owner is not), none once it is killed."""
    assert await store.liveness.count_alive() == 0
    await store.liveness.register("host:5:me")
    holder = await _start_holder(db_url, "host:6:running")
    try:
        assert await store.liveness.count_alive() == 1
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        await holder.wait()
        await store.liveness.unregister("host:5:me")
    started = time.monotonic()
    while await store.liveness.count_alive():
        assert time.monotonic() - started < 5.0, "a killed process still counts as alive"
        await asyncio.sleep(0.05)


NAMED_HOLDER = """
import asyncio, sys
from outbox.store.factory import open_store

async def main(url):
    store = await open_store(url)
    store.liveness.describe_process("outbox test")
    await store.liveness.register("host:7:delivers")
    await store.liveness.register("host:7:present")
    print("ready", flush=True)
    await asyncio.sleep(600)

asyncio.run(main(sys.argv[1]))
"""


async def test_holders_name_each_process_once_with_what_it_said_it_is(
        store: Store, db_url: str) -> None:
    """What `outbox restore` names when it refuses: a process holding two locks (serve's
    own and its in-process worker's) is one process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", NAMED_HOLDER, db_url, stdout=asyncio.subprocess.PIPE,
        start_new_session=True)
    assert process.stdout is not None
    try:
        assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"ready"
        holders = await store.liveness.holders()
        assert len(holders) == 1 and holders[0].startswith(f"outbox test, pid {process.pid} "
                                                            "on "), holders
        assert await store.liveness.count_alive() == 1
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
