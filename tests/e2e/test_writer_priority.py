"""outbox.niceness: a delivery process of `outbox serve` runs at a lower CPU priority,
except SQLite's writer thread, which holds the database's write lock that serve's
submits wait for. On Linux a thread's priority is its own and a new thread starts with
its creator's: `run_in_the_background` lowers the calling thread and what it starts
later, not the threads already running."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest

from outbox.niceness import BACKGROUND
from tests.e2e.support import fill_queue, relay_for, wait_all_sent
from tests.processes import base_config
from tests.smtpd import ScriptedServer

QUEUED = 1500  # enough work for the writer thread to stand out by its CPU time


def priority(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)  # on Linux: the thread's own


def test_only_the_calling_thread_and_those_it_starts_later_run_in_the_background() -> None:
    script = textwrap.dedent("""
        import os, threading
        from outbox.niceness import run_in_the_background

        def report(into, go=None):
            if go is not None:
                go.wait()
            into.append(os.getpriority(os.PRIO_PROCESS, 0))

        earlier, later, go = [], [], threading.Event()
        started_before = threading.Thread(target=report, args=(earlier, go))
        started_before.start()
        base = os.getpriority(os.PRIO_PROCESS, 0)
        run_in_the_background()
        go.set()
        started_before.join()
        started_after = threading.Thread(target=report, args=(later,))
        started_after.start()
        started_after.join()
        print(base, os.getpriority(os.PRIO_PROCESS, 0), earlier[0], later[0])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)
    base, caller, before, after = map(int, done.stdout.split())
    assert (caller, before, after) == (base + BACKGROUND, base, base + BACKGROUND)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # no writer thread on PG
def test_a_delivery_processs_sqlite_writer_keeps_serves_priority(
        start_outbox: Any, database_url: str, tmp_path: Path) -> None:
    with ScriptedServer() as sink:
        config = base_config(tmp_path, database_url, [relay_for(sink)])
        fill_queue(config, QUEUED)
        config["delivery"] = {**config.get("delivery", {}), "processes": 1}
        serve = start_outbox([], config=config)
        wait_all_sent(database_url, QUEUED, timeout=120)
        assert serve.proc is not None
        serves = priority(serve.proc.pid)
        [child] = [int(e["pid"]) for e in serve.logged("delivery process started")]
        threads = {t.id: t.user_time + t.system_time for t in psutil.Process(child).threads()}
        others = {tid: cpu for tid, cpu in threads.items() if tid != child}
        # The busiest thread besides the event loop: the writer, which claimed and recorded
        # every message (the readers have next to nothing to do here).
        writer = max(others, key=others.__getitem__)
        assert others[writer] > 0, threads
        assert priority(child) == serves + BACKGROUND, "its event loop runs in the background"
        assert priority(writer) == serves, "its SQLite writer runs at serve's priority"
