"""The support bundle always has logs (issue 14, first day): with `[logging] file` empty,
Outbox keeps a rotating copy of its log beside the SQLite database, and `outbox
support-bundle` puts its last lines in logs.txt. Real `outbox` processes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from tests.created import create_database
from tests.processes import write_config
from tests.zygote import run as fork_run

from outbox.config import LoggingSettings
from outbox.errors import ConfigError
from outbox.observability import RotatingLog, _Tee


def outbox(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    return fork_run(list(args), env, cwd)


def test_the_bundle_has_logs_without_a_log_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    config = str(write_config(tmp_path / "outbox.toml", {
        "database": {"url": "sqlite:///./data/outbox.db"},
        "relays": [{"name": "default", "host": "127.0.0.1", "port": 2525, "security": "none"}],
    }))
    assert LoggingSettings().file == ""  # the default: stderr
    create_database(config)  # as serve would: no other command creates it
    sent = outbox("send", "--from", "shop@example.test", "--to", "ann@example.test",
                  "--subject", "logged", "--text", "hi", "--config", config, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    message_id = sent.stdout.strip().splitlines()[-1]
    assert "message accepted" in sent.stderr  # stderr still has it
    history = tmp_path / "data" / "outbox.log"
    assert message_id in history.read_text()

    bundle = tmp_path / "bundle.zip"
    made = outbox("support-bundle", "-o", str(bundle), "--config", config, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    with zipfile.ZipFile(bundle) as archive:
        logs = archive.read("logs.txt").decode()
    assert message_id in logs and "message accepted" in logs


def test_the_log_copy_rotates(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "outbox.log", max_bytes=100, backups=2)
    for n in range(12):
        log.write(f"line {n:02d} " + "x" * 20 + "\n")
    log.flush()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["outbox.log", "outbox.log.1", "outbox.log.2"]
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    assert "line 11" in (tmp_path / "outbox.log").read_text()


def test_processes_sharing_the_log_copy_rotate_it_once_and_lose_no_line(
        tmp_path: Path) -> None:
    """serve and its delivery process (or a CLI command) each hold the file open: the
    size that counts is the file's, and one that finds the file rotated already by the
    other writes on in the new one instead of rotating it again."""
    serve = RotatingLog(tmp_path / "outbox.log", max_bytes=100, backups=3)
    child = RotatingLog(tmp_path / "outbox.log", max_bytes=100, backups=3)
    lines = [f"line {n:02d} " + "x" * 20 + "\n" for n in range(10)]  # 29 bytes each
    for n, line in enumerate(lines):
        (serve if n % 2 else child).write(line)
    files = [tmp_path / name for name in ("outbox.log.3", "outbox.log.2", "outbox.log.1",
                                          "outbox.log")]
    assert all(p.stat().st_size <= 100 for p in files)
    assert "".join(p.read_text() for p in files) == "".join(lines)


def test_the_log_copy_is_made_at_its_first_line(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "logs" / "outbox.log")
    assert not any(tmp_path.iterdir()), "nothing is made before a line is written"
    log.write("first\n")
    log.flush()
    assert (tmp_path / "logs" / "outbox.log").read_text() == "first\n"


def test_a_log_copy_that_cannot_be_made_is_refused_at_once(tmp_path: Path) -> None:
    in_a_file = tmp_path / "a-file"
    in_a_file.write_text("")
    with pytest.raises(ConfigError, match=r"cannot write .*a-file/outbox\.log"):
        RotatingLog(in_a_file / "outbox.log")



def test_a_log_copy_that_stops_working_never_stops_the_log(tmp_path: Path) -> None:
    """The copy is made at its first line; if its directory has become a file by then,
    the line still reaches the log, with one line saying the copy stopped, and no
    exception reaches the code that logged."""
    logs = tmp_path / "logs"
    logs.mkdir()
    out = io.StringIO()
    tee = _Tee(out, RotatingLog(logs / "outbox.log"))
    logs.rmdir()
    logs.write_text("")  # now a file: the copy cannot be made

    tee.write('{"event": "first"}\n')
    tee.write('{"event": "second"}\n')
    tee.flush()

    stopped, *logged = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in logged] == ["first", "second"]
    assert stopped["event"].startswith(f"the log copy {logs / 'outbox.log'} stopped")
    assert stopped["level"] == "warning"
