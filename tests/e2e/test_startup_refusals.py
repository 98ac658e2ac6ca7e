"""`outbox serve` refuses a setup it cannot work with, in one line (issue 10).

SPEC §2: "Every command exits non-zero with a one-line human error on bad input;
none prints a traceback for a user mistake." Before issue 10 a read-only SQLite
file gave a serve that answered 500 to every submit while /healthz said 200, and a
port in use printed uvicorn's traceback line.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.created import create_database
from tests.dbsql import sql
from tests.pg import fresh_database
from tests.processes import OutboxProcess, base_config, free_port, write_config

REFUSED_WITHIN = 15.0  # seconds: start-up, then the refusal


def _refusal(process: OutboxProcess) -> str:
    """Start and wait for the exit; the one line of stderr."""
    process.start(wait=False)
    assert process.proc is not None
    try:
        code = process.proc.wait(REFUSED_WITHIN)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"outbox serve kept running: {process.stderr_text()}") from None
    stderr = process.stderr_text()
    print(f"\nexit {code}: {stderr}")
    assert code != 0
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"one line on stderr, got {len(lines)}: {stderr}"
    return lines[0]


def _serve(tmp_path: Path, url: str, **sections: dict[str, str]) -> OutboxProcess:
    relay = {"name": "default", "host": "127.0.0.1", "port": free_port(), "security": "none"}
    config = base_config(tmp_path, url, [relay], **sections)
    return OutboxProcess(write_config(tmp_path / "outbox.toml", config), config)


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@pytest.fixture(params=["file", "file_and_directory"])
def read_only_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """An Outbox SQLite database whose file (and, in the second case, its directory)
    cannot be written.

    The tests run as root, and root ignores permission bits (0444 / 0555 alone
    would not stop a single write), so besides the modes a real operator would
    see, the file, its WAL companions and the directory are made immutable
    (`chattr +i`): the kernel then refuses every write, to root too. (Opening the
    URL with `?mode=ro` would only test SQLite's own flag, not a file the
    process cannot write; a read-only bind mount is not available here.)"""
    data = tmp_path / "data"
    data.mkdir()
    database = data / "outbox.db"
    served = _serve(tmp_path, f"sqlite:///{database}")
    create_database(served.config_path)  # as serve would: no other command creates it
    queued = served.cli(
        "send", "--from", "a@example.test", "--to", "b@example.test", "--text", "queued")
    assert queued.returncode == 0, queued.stderr
    files = sorted(data.iterdir())
    directories = [data] if request.param == "file_and_directory" else []
    for path in files:
        path.chmod(0o444)
    for path in directories:
        path.chmod(0o555)
    _chattr("+i", *files, *directories)
    try:
        yield database
    finally:
        _chattr("-i", *directories, *files)
        data.chmod(0o755)
        for path in files:
            path.chmod(0o644)


def test_read_only_sqlite_database_is_refused_in_one_line(tmp_path: Path,
                                                           read_only_sqlite: Path) -> None:
    with pytest.raises(PermissionError), read_only_sqlite.open("ab") as handle:
        handle.write(b"x")  # the set-up holds, even for root
    line = _refusal(_serve(tmp_path, f"sqlite:///{read_only_sqlite}"))
    assert str(read_only_sqlite) in line
    assert "read-only" in line.lower() or "cannot be written" in line.lower(), line


def test_read_only_postgresql_database_is_refused_in_one_line(tmp_path: Path) -> None:
    # What a hot standby or a database switched to read-only looks like to a client.
    with fresh_database() as url:
        name = url.rsplit("/", 1)[1]
        served = _serve(tmp_path, url)
        assert served.cli("migrate").returncode == 0  # the empty database gets the tables
        created = served.cli("send", "--from", "a@example.test", "--to", "b@example.test",
                             "--text", "queued")
        assert created.returncode == 0, created.stderr
        sql(url, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        line = _refusal(_serve(tmp_path, url))
    assert "read-only" in line.lower() or "cannot be written" in line.lower(), line
    assert name in line, line


def test_port_in_use_is_refused_in_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _serve(tmp_path, f"sqlite:///{tmp_path}/outbox.db",
                         server={"bind": f"127.0.0.1:{port}"})
        started = time.monotonic()
        line = _refusal(process)
        took = time.monotonic() - started
    print(f"refused in {took:.1f}s")
    assert "[server] bind" in line and "OUTBOX_SERVER__BIND" in line, line
    assert str(port) in line, line
