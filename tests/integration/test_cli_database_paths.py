"""Where the CLI looks for its database (issue 14, first day): a relative SQLite path,
blob_dir and log file follow the config file's directory, not the current one; and
only `serve` and `worker` create a database: any other command on a missing one (even
`migrate`) says in one line which file it looked for, and creates nothing. Real
processes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path

import alembic.command
import pytest
import sqlalchemy
from tests.created import create_database
from tests.pg import fresh_database
from tests.zygote import run as fork_run

from outbox.config import load_settings
from outbox.store.sql.store import alembic_config, head_revision


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


def test_a_relative_file_secret_follows_the_config_file(tmp_path: Path) -> None:
    config_dir, elsewhere = tmp_path / "conf", tmp_path / "run"
    config_dir.mkdir()
    elsewhere.mkdir()
    (config_dir / "relaypw.txt").write_text("pw\n")
    (config_dir / "outbox.toml").write_text(
        '[[relays]]\nname = "default"\nhost = "127.0.0.1"\nusername = "u"\n'
        'password = "file:relaypw.txt"\n')
    shown = outbox("config", "show", "--config", "../conf/outbox.toml", cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert 'password = "***"' in shown.stdout


def test_migrate_finds_the_database_beside_the_config(layout: tuple[Path, Path]) -> None:
    config_dir, elsewhere = layout
    config = str(config_dir / "outbox.toml")
    database = config_dir / "data" / "outbox.db"
    missing = outbox("migrate", "--config", config, cwd=elsewhere)
    assert missing.returncode == 1 and f"no database at {database}:" in missing.stderr
    assert create_database(config) == database  # as serve would
    migrated = outbox("migrate", "--config", config, cwd=elsewhere)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == f"database ready: sqlite:///{database}"
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



# A command that finds a database without Outbox's tables (an empty file, another
# program's database) refuses it in one line and writes nothing: no schema, no journal,
# no worker directory, no export directory, no backup.
ANY_COMMAND = [
    ("relay", "ls"), ("keys", "list"), ("users", "list"), ("contacts", "suggest", "an"),
    ("send", "--from", "a@example.test", "--to", "b@example.test", "--text", "x"),
    ("queue", "ls"), ("export", "--status", "sent", "-o", "exported"),
    ("backup", "-o", "backup.tar"),
]


def another_programs_database(path: Path) -> bytes:
    """A SQLite file of another application (one table, `invoices`); its bytes."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
        conn.execute("INSERT INTO invoices (total) VALUES (42)")
        conn.commit()
    return path.read_bytes()


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], says: str) -> None:
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert says in lines[0]
    assert "Traceback" not in result.stderr and "OperationalError" not in result.stderr


@pytest.mark.parametrize("command", ANY_COMMAND, ids=lambda c: " ".join(c[:2]))
def test_no_command_puts_outbox_tables_in_another_programs_database(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    database = tmp_path / "other-app.db"
    before = another_programs_database(database)
    (tmp_path / "outbox.toml").write_text('[database]\nurl = "sqlite:///./other-app.db"\n'
                                          '[logging]\nfile = "outbox.log"\n')
    result = outbox(*command, "--config", "outbox.toml", cwd=tmp_path)
    assert_refused_in_one_line(result, f"{database} holds no Outbox tables")
    assert database.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "outbox.log") == [
        "other-app.db", "outbox.toml"]


@pytest.mark.parametrize("command", [("relay", "ls"), ("backup", "-o", "backup.tar")],
                         ids=lambda c: c[0])
def test_an_empty_file_gets_no_schema(tmp_path: Path, command: tuple[str, ...]) -> None:
    (tmp_path / "outbox.db").touch()
    result = outbox(*command, cwd=tmp_path)
    assert_refused_in_one_line(result, "outbox.db holds no Outbox tables")
    assert (tmp_path / "outbox.db").stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"]


def test_backup_without_a_database_creates_none(tmp_path: Path) -> None:
    result = outbox("backup", "-o", "backup.tar", cwd=tmp_path)
    assert_refused_in_one_line(result, "no database at ./outbox.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_empty_postgresql_database_gets_no_outbox_tables(tmp_path: Path) -> None:
    with fresh_database("outbox_cli_empty") as url:
        (tmp_path / "outbox.toml").write_text(f'[database]\nurl = "{url}"\n'
                                              '[logging]\nfile = "outbox.log"\n')
        for command in (("keys", "list"), ("relay", "ls"), ("queue", "ls"),
                        ("export", "--status", "sent", "-o", "exported")):
            result = outbox(*command, "--config", "outbox.toml", cwd=tmp_path)
            assert_refused_in_one_line(result, "holds no Outbox tables")
        name = url.rsplit("/", 1)[1]
        assert psql_in(name, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"
    assert not (tmp_path / "exported").exists()


def test_a_command_that_writes_upgrades_an_older_outbox_schema(tmp_path: Path) -> None:
    """Decided: an Outbox database with an older schema is Outbox's already (serve would
    upgrade it at its next start), so `keys create` may bring it to the head first."""
    database = tmp_path / "outbox.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        alembic.command.upgrade(config, "0010_bounces_suppressions")
    engine.dispose()
    result = outbox("keys", "create", "--name", "app", "--scopes", "send", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with contextlib.closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (
            head_revision(),)


def psql_in(database: str, sql: str) -> str:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database,
                           "-Atqc", sql], capture_output=True, text=True,
                          check=True).stdout.strip()
