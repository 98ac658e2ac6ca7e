"""`outbox migrate` migrates an existing database only (SPEC §2: `outbox serve` and
`outbox worker` create one, no other command does): on a SQLite path with no file it
refuses in one line and creates nothing, no file and no directory; an older Outbox
database is brought to the head, and an empty one (an empty SQLite file, an empty
PostgreSQL database: the database itself exists) gets Outbox's tables. Real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import alembic.command
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import create_async_engine
from tests.pg import fresh_database
from tests.zygote import run as fork_run

from outbox.store.factory import open_store
from outbox.store.sql.store import alembic_config, head_revision
from outbox.store.urls import database_url

OLDER = "0010_bounces_suppressions"
HINT = "`outbox serve` or `outbox worker` creates it (or point --config / [database] url at "


def outbox(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    return fork_run([*args, "--config", str(config)], env, config.parent)


def configure(directory: Path, url: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "outbox.toml").write_text(f'[database]\nurl = "{url}"\n')
    return directory / "outbox.toml"


@pytest.mark.parametrize("url", ["sqlite:///./outbox.db", "sqlite:///./data/outbox.db"],
                         ids=["file", "file_and_directory"])
def test_migrate_refuses_a_missing_sqlite_file_and_creates_nothing(tmp_path: Path,
                                                                   url: str) -> None:
    config = configure(tmp_path / "etc", url)
    path = tmp_path / "etc" / url.removeprefix("sqlite:///./")
    result = outbox(config, "migrate")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"error: no database at {path}: {HINT}the "
                                          "existing one)"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["etc", "outbox.toml"]


def test_other_commands_point_at_serve_not_migrate(tmp_path: Path) -> None:
    config = configure(tmp_path, "sqlite:///./outbox.db")
    for command in (("queue", "ls"), ("keys", "list")):
        result = outbox(config, *command)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"error: no database at {tmp_path / 'outbox.db'}: {HINT}the existing one)"]
    assert not (tmp_path / "outbox.db").exists()


def upgrade_to(conn: sqlalchemy.Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    alembic.command.upgrade(config, revision)


async def upgrade_postgresql(url: str, revision: str) -> None:
    engine = create_async_engine(database_url(url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to, revision)
    finally:
        await engine.dispose()


async def revision_of(url: str) -> str | None:
    store = await open_store(url)
    try:
        return (await store.describe_database()).revision
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL whose database exists, and holds nothing yet."""
    if request.param == "sqlite":
        (tmp_path / "outbox.db").touch()
        yield f"sqlite:///{tmp_path}/outbox.db"
        return
    with fresh_database("outbox_cli_migrate") as url:
        yield url


def make_older(url: str) -> None:
    if url.startswith("sqlite"):
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as conn:
            upgrade_to(conn, OLDER)
        engine.dispose()
    else:
        asyncio.run(upgrade_postgresql(url, OLDER))


@pytest.mark.parametrize("older", [True, False], ids=["older_schema", "empty"])
def test_migrate_brings_an_existing_database_to_the_head(tmp_path: Path, backend: str,
                                                         older: bool) -> None:
    if older:
        make_older(backend)
        assert asyncio.run(revision_of(backend)) == OLDER
    config = configure(tmp_path / "etc", backend)
    result = outbox(config, "migrate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("database ready: ")
    assert asyncio.run(revision_of(backend)) == head_revision()
