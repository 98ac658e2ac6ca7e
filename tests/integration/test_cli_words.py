"""What a new user reads from the `outbox` command (issue 14, first day): `--version`,
usage mistakes as one line in plain words (no click internals), help without `<bool>` and
with `[[relays]]` intact, and a `queue ls` that reads at 80 columns with full ids.
Real `outbox` processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.created import create_database
from tests.processes import write_config
from tests.zygote import run as fork_run

from outbox import __version__


def outbox(*args: str, cwd: Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    env["COLUMNS"] = str(columns)
    return fork_run(list(args), env, cwd)


def test_version(tmp_path: Path) -> None:
    result = outbox("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"outbox {__version__}"


@pytest.mark.parametrize(("args", "expected"), [
    (("send", "--to", "a@example.test"), "error: missing option '--from' (see `outbox send "
                                         "--help`)"),
    (("contacts", "import"), "error: missing argument 'file' (see `outbox contacts import "
                             "--help`)"),
    (("queue", "ls", "--status", "bogus"), "error: invalid value for '--status': 'bogus' is "
                                           "not one of"),
    (("nosuch",), "error: no such command 'nosuch' (see `outbox --help`)"),
])
def test_usage_mistakes_are_one_plain_line(tmp_path: Path, args: tuple[str, ...],
                                           expected: str) -> None:
    result = outbox(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected)
    for internal in ("MissingParameter", "BadParameter", "UsageError", "NoSuchOption",
                     "Value error", "OUTBOX_DEBUG", "Traceback"):
        assert internal not in result.stderr


def test_help_shows_flags_without_types_and_keeps_brackets(tmp_path: Path) -> None:
    for args in (("--help",), ("send", "--help"), ("relay", "set-credentials", "--help")):
        result = outbox(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "<bool>" not in result.stdout, args
    credentials = outbox("relay", "set-credentials", "--help", cwd=tmp_path).stdout
    assert "the relay's name in [[relays]]" in credentials


def test_queue_ls_reads_at_80_columns_with_full_ids(tmp_path: Path) -> None:
    config = str(write_config(tmp_path / "outbox.toml", {
        "database": {"url": "sqlite:///./outbox.db"},
        "relays": [{"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}],
    }))
    create_database(config)  # as serve would: no other command creates it
    ids = []
    for n in range(2):
        sent = outbox("send", "--from", "shop@example.test", "--to",
                      "Ann Long-Name <ann.longname@example.test>, bob@example.test",
                      "--subject", f"A rather long subject about the quarterly report {n}",
                      "--text", "hi", "--config", config, cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        ids.append(sent.stdout.strip().splitlines()[-1])
    for columns in (80, 100, 160):
        listed = outbox("queue", "ls", "--config", config, cwd=tmp_path, columns=columns)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert all(len(line) <= columns for line in lines), listed.stdout
        header = lines[0].split()
        assert {"id", "status", "recipients", "subject"} <= set(header), lines[0]
        for message_id in ids:
            assert message_id in listed.stdout
    wide = outbox("queue", "ls", "--config", config, cwd=tmp_path, columns=160).stdout
    assert {"attempts", "created"} <= set(wide.splitlines()[0].split())
