"""`-o` paths a user gets wrong: the commands that write a file or a directory check the
path before any work, say what is wrong in one line, and write nothing (no partial
backup beside it). Real processes, on a real migrated database."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.pg import database
from tests.zygote import run as fork_run


def outbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    return fork_run(list(args), env, cwd)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A directory with a migrated database, its config and a sub-directory `dump`."""
    with database("sqlite", tmp_path):
        (tmp_path / "outbox.toml").write_text('[database]\nurl = "sqlite:///./outbox.db"\n'
                                              '[logging]\nfile = "outbox.log"\n')
        (tmp_path / "dump").mkdir()
        yield tmp_path


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()
                  if p.name not in {"outbox.log", "outbox.db-workers"})


def assert_one_line(result: subprocess.CompletedProcess[str], says: str) -> None:
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert says in lines[0]
    assert "Error:" not in lines[0] and "[Errno" not in lines[0], lines[0]


@pytest.mark.parametrize(("command", "example"), [
    ("backup", "dump/outbox-backup.tar"), ("support-bundle", "dump/outbox-support.zip")])
def test_output_that_is_a_directory_is_refused_before_any_work(
        workdir: Path, command: str, example: str) -> None:
    before = listing(workdir)
    result = outbox(command, "-o", "dump", "--config", "outbox.toml", cwd=workdir)
    assert_one_line(result, f"dump is a directory (name the file to write, e.g. {example})")
    assert listing(workdir) == before, "no .dump.partial or other file may be left"
    assert list((workdir / "dump").iterdir()) == []


@pytest.mark.parametrize("output", ["outbox.toml", "outbox.toml/inside"])
def test_export_to_a_file_is_refused(workdir: Path, output: str) -> None:
    config = (workdir / "outbox.toml").read_text()
    before = listing(workdir)
    result = outbox("export", "--status", "sent", "-o", output, "--config", "outbox.toml",
                    cwd=workdir)
    assert_one_line(result, "outbox.toml is a file, not a directory")
    assert (workdir / "outbox.toml").read_text() == config
    assert listing(workdir) == before


def test_export_still_creates_a_missing_directory(workdir: Path) -> None:
    result = outbox("export", "--status", "sent", "-o", "new/exported", "--config",
                    "outbox.toml", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert (workdir / "new" / "exported").is_dir()
