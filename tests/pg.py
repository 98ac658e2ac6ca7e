"""Throw-away PostgreSQL databases on the machine's server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v",
            "ON_ERROR_STOP=1", "-Atqc"]


def psql(sql: str) -> str:
    result = subprocess.run([*PG_ADMIN, sql], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"PostgreSQL is required for this test and failed: {result.stderr}")
    return result.stdout


@contextmanager
def fresh_database(prefix: str = "outbox_e2e") -> Iterator[str]:
    """An empty database; yields its URL and drops it afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    psql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """A database URL for a test: a SQLite file in `directory`, or a fresh PostgreSQL one."""
    if kind == "sqlite":
        yield f"sqlite:///{directory}/outbox.db"
    else:
        with fresh_database() as url:
            yield url
