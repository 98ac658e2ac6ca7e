"""What serve's /healthz makes of a delivery process's health report (`read_health`):
the file the child rewrites every second, read as serve reads it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from outbox.runtime.children import SILENT_AFTER, STARTING, read_health


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
