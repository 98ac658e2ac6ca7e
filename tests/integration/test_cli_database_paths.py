"""Where the CLI looks for its database (issue 14, first day): a relative SQLite path,
blob_dir and log file follow the config file's directory, not the current one; and
only `serve`, `worker` and `migrate` create a database: any other command on a missing
one says in one line which file it looked for, and creates nothing. Real processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.zygote import run as fork_run

from outbox.config import load_settings


def outbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    return fork_run(list(args), env, cwd)


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A config directory naming relative paths, and another working directory."""
    config_dir, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    config_dir.mkdir()
    elsewhere.mkdir()
    (config_dir / "outbox.toml").write_text(
        '[database]\nurl = "sqlite:///./data/outbox.db"\n'
        '[logging]\nfile = "logs/outbox.log"\n'
        '[storage]\nblob_dir = "blobs"\n')
    (config_dir / "data").mkdir()
    return config_dir, elsewhere


def test_relative_paths_follow_the_config_file(layout: tuple[Path, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir, elsewhere = layout
    monkeypatch.chdir(elsewhere)
    settings = load_settings(str(config_dir / "outbox.toml"))
    assert settings.database.url == f"sqlite:///{config_dir / 'data' / 'outbox.db'}"
    assert settings.logging.file == str(config_dir / "logs" / "outbox.log")
    assert settings.storage.blob_dir == str(config_dir / "blobs")


def test_migrate_creates_the_database_beside_the_config(layout: tuple[Path, Path]) -> None:
    config_dir, elsewhere = layout
    config = str(config_dir / "outbox.toml")
    created = outbox("migrate", "--config", config, cwd=elsewhere)
    assert created.returncode == 0, created.stderr
    assert (config_dir / "data" / "outbox.db").is_file()
    listed = outbox("queue", "ls", "--config", config, cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert not any(elsewhere.iterdir()), "nothing may appear in the current directory"


@pytest.mark.parametrize("command", [
    ("queue", "ls"), ("relay", "ls"), ("status", "0123456789abcdef"),
    ("keys", "create", "--name", "app", "--scopes", "send"), ("contacts", "suggest", "an"),
])
def test_other_commands_never_create_a_database(layout: tuple[Path, Path],
                                                command: tuple[str, ...]) -> None:
    config_dir, elsewhere = layout
    result = outbox(*command, "--config", str(config_dir / "outbox.toml"), cwd=elsewhere)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"no database at {config_dir / 'data' / 'outbox.db'}" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (config_dir / "data" / "outbox.db").exists()
    assert not any(elsewhere.iterdir())


def test_a_command_without_config_or_database_leaves_no_file(tmp_path: Path) -> None:
    """The defaults put the database, and the log copy for support bundles, in the
    current directory: a command that finds no database creates neither."""
    result = outbox("status", "0123456789abcdef", cwd=tmp_path)
    assert result.returncode == 1
    assert "no database at ./outbox.db" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []

