"""What serve's /healthz makes of a delivery process's health report (`read_health`):
the file the child rewrites every second, read as serve reads it; and which of the
directories holding them a starting serve removes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outbox.runtime.children import (
    CHILD_MARK,
    SHARED_PREFIX,
    SILENT_AFTER,
    STARTING,
    _remove_orphaned_directories,
    mark_running,
    read_health,
)


def report(path: Path, problems: list[str], age: float = 0.0) -> Path:
    path.write_text(json.dumps({"problems": problems}))
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_a_child_without_problems_is_well(tmp_path: Path) -> None:
    assert read_health(report(tmp_path / "health-1.json", []), time.time()) == ""


def test_its_problems_are_one_line(tmp_path: Path) -> None:
    path = report(tmp_path / "health-1.json", ["claim loop is failing (3 times in a row): "
                                               "database is locked", "sweep loop is not running"])
    assert read_health(path, time.time()) == ("claim loop is failing (3 times in a row): "
                                              "database is locked; sweep loop is not running")


def test_no_report_yet_is_starting(tmp_path: Path) -> None:
    assert read_health(tmp_path / "health-1.json", time.time()) == STARTING


def test_a_report_older_than_the_silence_limit_is_a_problem(tmp_path: Path) -> None:
    path = report(tmp_path / "health-1.json", [], age=SILENT_AFTER + 5)
    assert read_health(path, time.time()).startswith("has not reported for 20s")
    assert read_health(report(path, [], age=SILENT_AFTER - 5), time.time()) == ""


def test_a_report_that_cannot_be_read_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "health-1.json"
    path.write_text('{"problems": ')  # never written so (the child renames a whole file)
    assert read_health(path, time.time()).startswith("its health report cannot be read")
    path.write_text('{"state": "ok"}')
    assert read_health(path, time.time()).startswith("its health report cannot be read")


def a_dead_pid() -> int:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(ended.stdout)


def test_a_starting_serve_removes_only_what_nobody_runs_in(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = a_dead_pid()
    abandoned = tmp_path / f"{SHARED_PREFIX}{dead}-a"
    child_running = tmp_path / f"{SHARED_PREFIX}{dead}-b"  # serve killed, its child finishing
    serving = tmp_path / f"{SHARED_PREFIX}{os.getpid()}-c"
    for directory in (abandoned, child_running, serving):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")
    mark_running(abandoned / "health-1.json")  # this process: alive...
    (abandoned / f"{CHILD_MARK}{os.getpid()}").rename(
        abandoned / f"{CHILD_MARK}{a_dead_pid()}")  # ...ended
    mark_running(child_running / "health-1.json")
    unrelated = tmp_path / "outbox-delivery-notes"

    unrelated.mkdir()
    _remove_orphaned_directories()
    assert not abandoned.exists()
    assert child_running.exists() and serving.exists() and unrelated.exists()
