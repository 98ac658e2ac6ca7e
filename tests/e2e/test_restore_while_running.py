"""`outbox restore` is refused while any Outbox process writes to the database, from
before it acts on the database (its liveness lock) to its end: `outbox serve` before
its delivery processes have started (they take their liveness locks only after a second
or two of imports), and `outbox submission`, which delivers nothing. Once the process
is gone, stopped or killed, the restore goes ahead. Both backends: the locks are lock
files on SQLite and advisory locks on PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

from tests.dbsql import scalar
from tests.e2e.support import fill_queue, status_counts
from tests.e2e.test_backup_restore import relay_for_nowhere
from tests.processes import (
    OutboxProcess,
    accepts,
    base_config,
    free_port,
    wait_until,
    write_config,
)

# A delivery process of serve that never gets past its start (as if its imports took
# forever): only serve's own process can hold the database until it is stopped.
STALLED_CHILD = """
import os, time
if os.environ.get("OUTBOX_PARENT_PID"):
    time.sleep(600)
"""


def _backup_of_two_messages(tmp_path: Path) -> Path:
    (tmp_path / "source").mkdir()
    config = base_config(tmp_path / "source", f"sqlite:///{tmp_path}/source/outbox.db",
                         [relay_for_nowhere()])
    fill_queue(config, 2)
    source = OutboxProcess(write_config(tmp_path / "source.toml", config), config)
    made = source.cli("backup", "-o", str(tmp_path / "two.tar"))
    assert made.returncode == 0, made.stderr
    return tmp_path / "two.tar"


def _refused_naming(target: OutboxProcess, backup: Path, what: str) -> str:
    refused = target.cli("restore", str(backup), "--force")
    assert refused.returncode == 1, refused.stdout
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "1 Outbox process is using the database" in lines[0], lines[0]
    assert f"({what}, pid " in lines[0] and "nothing was changed" in lines[0], lines[0]
    assert "`outbox submission`" in lines[0], lines[0]  # the hint names every command
    return lines[0]


def _restored(target: OutboxProcess, backup: Path, url: str) -> None:
    done = target.cli("restore", str(backup), "--force")
    assert done.returncode == 0, done.stderr
    assert status_counts(url) == {"queued": 2}


def _has_logged(process: OutboxProcess, event: str) -> bool:
    assert process.proc is not None and process.proc.poll() is None, process.stderr_text()
    return process.log_path.exists() and bool(process.logged(event))


def test_restore_is_refused_from_serves_start_before_its_delivery_processes_run(
        tmp_path: Path, database_url: str) -> None:
    backup = _backup_of_two_messages(tmp_path)
    stall = tmp_path / "stall"
    stall.mkdir()
    (stall / "sitecustomize.py").write_text(STALLED_CHILD)
    config = base_config(tmp_path, database_url, [relay_for_nowhere()],
                         delivery={"processes": 1})
    fill_queue(config, 3)
    serve = OutboxProcess(write_config(tmp_path / "serve.toml", config), config,
                          env={"PYTHONPATH": os.pathsep.join(
                              filter(None, [str(stall), os.environ.get("PYTHONPATH")]))})
    serve.start(wait=False)  # its /healthz says 503 while the delivery process starts
    try:
        wait_until(lambda: _has_logged(serve, "delivery process started"),
                   message="serve starting its delivery process")
        _refused_naming(serve, backup, "outbox serve")
        assert scalar(database_url, "SELECT count(*) FROM messages") == "3"
    finally:
        serve.stop()
    _restored(serve, backup, database_url)


def test_restore_is_refused_while_outbox_submission_runs_and_allowed_once_it_is_killed(
        tmp_path: Path, database_url: str) -> None:
    backup = _backup_of_two_messages(tmp_path)
    port = free_port()
    config = base_config(tmp_path, database_url, [relay_for_nowhere()],
                         submission={"bind": f"127.0.0.1:{port}", "security": "none"})
    fill_queue(config, 3)
    submission = OutboxProcess(write_config(tmp_path / "submission.toml", config), config,
                               command="submission").start()
    try:
        # Its greeting, not a TCP accept: the socket listens from the start (a taken port
        # is one line), the liveness lock comes after the database opens, read-only,
        # and the listener answers only then. A restore between the two (CI of stop
        # 61, on a loaded machine) goes ahead before this process has written
        # anything, and in place, so its open connections see the restored data.
        wait_until(lambda: accepts(("127.0.0.1", port), submission, b"220"),
                   message="the greeting")
        _refused_naming(submission, backup, "outbox submission")
        assert scalar(database_url, "SELECT count(*) FROM messages") == "3"
    finally:
        submission.kill()  # kill -9: its lock goes with it, nothing to clean up first
    _restored(submission, backup, database_url)
