"""A list of values bound as one parameter, whatever its length: a JSON array read with
`json_each` on SQLite, an array on PostgreSQL.

`IN (:a1, :a2, ...)` with one bound value per item cost SQLAlchemy several milliseconds
of Python per 1,000 items (rendering and processing each), on SQLite's one writer
thread, where every submit waits (issue 17). One parameter makes the statement's text
the same for any length, so it is compiled once and no list needs cutting to fit a
backend's limit on parameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Connection, Text, any_, bindparam, column, func, select


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def in_bound_list(target: ColumnElement[Any], name: str, *, postgres: bool
                  ) -> ColumnElement[bool]:
    """`target` is one of the parameter `name`'s values (give them with `bound_list`)."""
    if postgres:
        return target == any_(bindparam(name, type_=ARRAY(Text())))
    return target.in_(select(column("value")).select_from(func.json_each(bindparam(name))))


def bound_list(conn: Connection, values: Sequence[str]) -> Any:
    """`values` as the parameter of an `in_bound_list` on `conn`'s backend."""
    return list(values) if is_postgres(conn) else json.dumps(list(values))
