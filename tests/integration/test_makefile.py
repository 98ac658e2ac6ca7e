"""`make run` installs runtime dependencies only; `make test` adds the dev extra; the
README opens with exactly `make run` and `make test` and points at nothing outside the
repository (issue 14: packaging); .venv is made from the system's CPython 3.11+ where
there is one (scripts/python.sh, issue 15). `make -n` prints the recipes without running
them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def dry_run(target: str, tmp_path: Path, *variables: str) -> str:
    """`make -n [VARIABLE=VALUE ...] TARGET` in a copy of the repository's top level with
    no .venv."""
    for name in ("Makefile", "pyproject.toml", "scripts/python.sh"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    result = subprocess.run(["make", "-n", *variables, target], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_no_dev_tools(tmp_path: Path) -> None:
    run = dry_run("run", tmp_path)
    installs = [line for line in run.splitlines() if "pip install" in line]
    assert any(re.search(r"pip install -q -e \.$", line) for line in installs), run
    assert "[dev]" not in run
    for tool in ("pytest", "mypy", "ruff"):  # as installed packages, not in the temp path
        assert not any(tool in line for line in installs), installs


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_installs_the_dev_extra(tmp_path: Path) -> None:
    assert "pip install -q -e '.[dev]'" in dry_run("test", tmp_path)


def chosen_python(system: Path | str) -> str:
    result = subprocess.run(["bash", str(REPO / "scripts/python.sh")], capture_output=True,
                            text=True, timeout=60, env={"SYSTEM_PYTHON": str(system),
                                                        "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_venv_is_made_from_the_system_python_when_it_is_recent_enough(
        tmp_path: Path) -> None:
    assert chosen_python(sys.executable) == sys.executable  # this one is 3.11 or newer
    old = tmp_path / "python3"  # says it is 3.10, as sys.exit(version < (3, 11)) would
    old.write_text("#!/bin/sh\nexit 1\n")
    old.chmod(0o755)
    assert chosen_python(old) == "python3"
    assert chosen_python(tmp_path / "absent") == "python3"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_builds_the_venv_from_the_chosen_python(tmp_path: Path) -> None:
    expected = subprocess.run(["bash", str(REPO / "scripts/python.sh")], capture_output=True,
                              text=True, timeout=60, check=True).stdout.strip()
    assert f"test -x .venv/bin/python || {expected} -m venv .venv" in dry_run("run", tmp_path)
    chosen = dry_run("run", tmp_path, "PYTHON=/opt/python3.12/bin/python3")  # make PYTHON=...
    assert "test -x .venv/bin/python || /opt/python3.12/bin/python3 -m venv .venv" in chosen


def test_readme_starts_with_the_two_commands_and_stays_in_the_repository() -> None:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)\n```", text, re.S)
    assert block
    assert [line.split("#")[0].strip() for line in block.group(1).splitlines()] == \
        ["make run", "make test"]
    assert "../" not in text and "shared/SPEC" not in text
    assert ".venv/bin/outbox" in text
