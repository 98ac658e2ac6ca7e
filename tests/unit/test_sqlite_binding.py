"""store/sqlite.py registers an adapter for None with the sqlite3 module (a lookup that
raised and cleared an AttributeError for each None bound): None must still be NULL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from outbox.store.sqlite import create_engine


def test_none_is_still_bound_as_null_after_the_engine_registers_its_adapter(
        tmp_path: Path) -> None:
    engine = create_engine(make_url(f"sqlite:///{tmp_path / 'bind.db'}"))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (a, b)"))
            conn.execute(text("INSERT INTO t VALUES (:a, :b)"), [{"a": None, "b": 1},
                                                                  {"a": "x", "b": None}])
            found = conn.execute(text("SELECT typeof(a), a, typeof(b), b FROM t ORDER BY rowid"))
            assert found.all() == [("null", None, "integer", 1), ("text", "x", "null", None)]
    finally:
        engine.dispose()
    # The adapter is the sqlite3 module's, for every connection of the process.
    plain = sqlite3.connect(":memory:")
    assert plain.execute("SELECT typeof(?), ? IS NULL", (None, None)).fetchone() == ("null", 1)
    plain.close()
