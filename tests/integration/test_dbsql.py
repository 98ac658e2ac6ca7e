"""tests/dbsql.py reads PostgreSQL through a kept connection: its rows are the text
`psql` prints, which the tests were written against, and a connection a test ends is
replaced."""

from __future__ import annotations

from pathlib import Path

from tests.dbsql import _psql, scalar, sql
from tests.pg import database, psql

AWKWARD = ("SELECT 1 AS a, 2 AS a, NULL, '', 'x,y', 'q\"z', 'back\\slash', '(paren)', ' pad ', "
           "true, 2.50::numeric, ARRAY['a', 'b c'], "
           "TIMESTAMPTZ '2026-12-07 19:57:21.2+00', INTERVAL '90 seconds'")


def test_rows_are_the_text_psql_prints(tmp_path: Path) -> None:
    with database("postgres", tmp_path) as url:
        assert sql(url, AWKWARD) == _psql(url, AWKWARD, 30)
        statement = "SELECT name, version_num FROM alembic_version, (VALUES ('x')) AS v(name)"
        assert sql(url, statement) == _psql(url, statement, 30)
        assert sql(url, "SELECT 1 WHERE false") == []
        assert sql(url, "SELECT 1 -- a comment ends it") == [("1",)]


def test_a_kept_connection_that_was_ended_is_replaced(tmp_path: Path) -> None:
    with database("postgres", tmp_path) as url:
        pid = scalar(url, "SELECT pg_backend_pid()")
        psql(f"SELECT pg_terminate_backend({pid})")
        assert scalar(url, "SELECT pg_backend_pid()") != pid
        assert scalar(url, "SELECT 41 + 1") == "42"
