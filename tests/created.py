"""A database made the way the SPEC allows (§2: only `outbox serve` and `outbox worker`
create one; `outbox migrate` only migrates an existing one): for a test that needs a
database before its first `outbox` command, the migrated SQLite file that serve would
make, copied from the suite's template where the config names it."""

from __future__ import annotations

import shutil
from pathlib import Path

from outbox.config import load_settings
from outbox.store.urls import database_url
from tests.pg import sqlite_template


def create_database(config: Path | str) -> Path:
    """The SQLite file the config at `config` names, migrated to the head; its path.
    Its directory must exist, as serve requires."""
    parsed = database_url(load_settings(str(config)).database.url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise ValueError(f"{config} names no SQLite file")
    path = Path(parsed.database)
    shutil.copyfile(sqlite_template(), path)
    return path
