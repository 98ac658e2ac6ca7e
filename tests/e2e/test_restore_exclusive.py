"""`outbox restore` runs alone: from before it looks for running processes until its
last change, a starting `outbox serve`, `outbox worker` or `outbox submission` refuses
with one line naming the restore (pid and host), and so does a second restore. Before,
a serve that started just after the restore's look ran on the database the restore
then replaced. Both backends: a lock file beside the SQLite database, an advisory lock
on PostgreSQL.

The first test holds a real `outbox restore` just after its look, inside its critical
section (a sitecustomize wraps the look; the database is real), so the race is hit
every time; the second starts a restore and a serve at the same moment, at real
timings, and checks each round ends in one of the orders the locks allow."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.dbsql import scalar
from tests.e2e.support import fill_queue, status_counts
from tests.e2e.test_backup_restore import relay_for_nowhere
from tests.e2e.test_restore_while_running import _backup_of_two_messages
from tests.processes import (
    OUTBOX,
    OutboxProcess,
    base_config,
    free_port,
    stop_all,
    wait_until,
    write_config,
)

# Loaded by the restore's interpreter only (PYTHONPATH): once the restore has found no
# process using the database, it says so and waits for the test's word.
PAUSE_AFTER_THE_LOOK = """
import os
_AT = os.environ.get("OUTBOX_TEST_RESTORE_PAUSE")
if _AT:
    import asyncio
    from pathlib import Path
    import outbox.service.archive as archive
    _look = archive._refuse_while_in_use

    async def _look_then_wait(*args, **kwargs):
        await _look(*args, **kwargs)
        Path(_AT, "looked").touch()
        while not Path(_AT, "go").exists():
            await asyncio.sleep(0.05)

    archive._refuse_while_in_use = _look_then_wait
"""


def _paused_restore(tmp_path: Path, config_path: Path, backup: Path) -> subprocess.Popen[str]:
    """A real `outbox restore --force` (an exec: the hook is loaded at start-up), held
    inside its critical section until `go` exists."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE_AFTER_THE_LOOK)
    env = {**os.environ, "OUTBOX_TEST_RESTORE_PAUSE": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hook),
                                                       os.environ.get("PYTHONPATH")]))}
    restore = subprocess.Popen([*OUTBOX, "restore", str(backup), "--force", "--config",
                                str(config_path)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until(lambda: (tmp_path / "looked").exists() or restore.poll() is not None,
               timeout=60, message="the restore to find nothing running")
    assert restore.poll() is None, restore.communicate()
    return restore


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def _refused_for_the_restore(process: OutboxProcess, what: str, restore_pid: int) -> None:
    proc = process.proc
    assert proc is not None
    wait_until(lambda: proc.poll() is not None, timeout=30,
               message=f"{what} to refuse (it is running during the restore)")
    line = _one_line(process.stderr_text())
    assert proc.returncode == 1, line
    assert "a restore is replacing the database" in line, line
    assert f"(outbox restore, pid {restore_pid} on " in line, line
    assert f"{what} did not start" in line and "once the restore has finished" in line, line


def test_a_process_starting_while_a_restore_replaces_the_database_refuses_naming_it(
        tmp_path: Path, database_url: str) -> None:
    backup = _backup_of_two_messages(tmp_path)
    config = base_config(tmp_path, database_url, [relay_for_nowhere()])
    fill_queue(config, 3)
    config_path = write_config(tmp_path / "target.toml", config)
    listener = {**config, "submission": {"bind": f"127.0.0.1:{free_port()}",
                                         "security": "none"}}
    restore = _paused_restore(tmp_path, config_path, backup)
    started: dict[str, OutboxProcess] = {}
    try:
        for what, command in [("outbox serve", "serve"), ("outbox worker", "worker"),
                              ("outbox submission", "submission")]:
            path = write_config(tmp_path / "listener.toml", listener) \
                if command == "submission" else config_path
            started[what] = OutboxProcess(path, config, command=command).start(wait=False)
        second = started["outbox serve"].cli("restore", str(backup), "--force")
        for what, process in started.items():
            _refused_for_the_restore(process, what, restore.pid)
        line = _one_line(second.stderr)
        assert second.returncode == 1, line
        assert ("another restore is replacing the database" in line
                and f"(outbox restore, pid {restore.pid} on " in line
                and "nothing was changed" in line), line
        assert restore.poll() is None
        assert scalar(database_url, "SELECT count(*) FROM messages") == "3"
    finally:
        stop_all(list(started.values()))  # nothing left running if one did start
        (tmp_path / "go").touch()
        _, err = restore.communicate(timeout=60)
    assert restore.returncode == 0, err
    assert status_counts(database_url) == {"queued": 2}
    after = OutboxProcess(config_path, config).start()  # the restore is over: it starts
    after.stop()


def test_a_serve_started_while_a_restore_holds_sqlites_write_lock_refuses_naming_it(
        tmp_path: Path) -> None:
    """A restore's transaction holds SQLite's write lock while it loads. serve's start-up
    checked that the database takes writes before it looked for a restore: it waited on
    that lock, silently, and after the 30 s busy timeout failed as "locked" (a stranger
    pass: a serve started 1.5 s into a 15 s restore said nothing until it ended). Now it
    looks first, waits a few seconds for the restore to end, and refuses naming it. The
    restore is held after its look, and the test holds the write lock as the restore's
    load would."""
    url = f"sqlite:///{tmp_path}/outbox.db"
    backup = _backup_of_two_messages(tmp_path)
    config = base_config(tmp_path, url, [relay_for_nowhere()])
    fill_queue(config, 3)
    config_path = write_config(tmp_path / "target.toml", config)
    restore = _paused_restore(tmp_path, config_path, backup)
    writer = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
    serve: OutboxProcess | None = None
    try:
        writer.execute("BEGIN IMMEDIATE")
        serve = OutboxProcess(config_path, config).start(wait=False)
        _refused_for_the_restore(serve, "outbox serve", restore.pid)
    finally:
        writer.rollback()
        writer.close()
        stop_all([serve] if serve is not None else [])
        (tmp_path / "go").touch()
        _, err = restore.communicate(timeout=60)
    assert restore.returncode == 0, err


# Seconds between the restore's start and serve's, one round each: from serve well
# before the restore's look to serve once the restore is loading.
SERVE_AFTER = (0.0, 0.1, 0.2, 0.3, 0.5)


@pytest.mark.long(15)
def test_a_restore_and_a_serve_started_together_never_both_go_ahead(
        tmp_path: Path, database_url: str) -> None:
    """At real timings either the restore comes first (and serve, trying for a few
    seconds, starts on the restored database once it is over), or serve does (and the
    restore refuses, naming it). Neither fails otherwise, and every refusal is one
    line."""
    backup = _backup_of_two_messages(tmp_path)
    config = base_config(tmp_path, database_url, [relay_for_nowhere()])
    config_path = write_config(tmp_path / "target.toml", config)
    orders: list[str] = []
    for after in SERVE_AFTER:
        fill_queue(config, 3)  # 5 or more: not the backup's 2
        before = scalar(database_url, "SELECT count(*) FROM messages")
        serve = OutboxProcess(config_path, config)
        done = _race(serve, backup, after)
        if done.returncode == 0:
            orders.append(f"{after}s: restore first")
            assert scalar(database_url, "SELECT count(*) FROM messages") == "2"
        else:
            line = _one_line(done.stderr)
            assert ("1 Outbox process is using the database" in line
                    and "(outbox serve, pid " in line), line
            orders.append(f"{after}s: serve first")
            assert scalar(database_url, "SELECT count(*) FROM messages") == before
    print(f"\nserve started after the restore by {', '.join(orders)}")


def _race(serve: OutboxProcess, backup: Path, after: float
          ) -> subprocess.CompletedProcess[str]:
    """`outbox restore`, and `after` seconds later serve, which must become healthy."""
    result: dict[str, subprocess.CompletedProcess[str]] = {}
    restoring = threading.Thread(target=lambda: result.update(
        done=serve.cli("restore", str(backup), "--force")))
    restoring.start()
    time.sleep(after)
    serve.start(wait=False)
    restoring.join(60)
    try:
        serve.wait_healthy()
    finally:
        serve.stop()
    return result["done"]
