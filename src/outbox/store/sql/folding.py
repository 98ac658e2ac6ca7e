"""`folded(text)`: text in lower case for a case-insensitive search, every letter, not
only ASCII's.

SQLite's own lower() folds A-Z only, so a search for 'ünïcode' never found
'Ünïcode' and 'GRÜSSE' never found 'Grüße' on SQLite while PostgreSQL found both. On
SQLite `folded` is `outbox_lower`, Python's str.lower registered on each connection
(store/sqlite.py); on PostgreSQL it is lower(), which folds by the database's LC_CTYPE
(every letter in a UTF-8 locale). The searched-for text is lowered with str.lower too,
so both sides fold alike.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

SQLITE_FUNCTION = "outbox_lower"


class folded(FunctionElement[str]):  # lower case: used like func.lower
    type = Text()
    inherit_cache = True
    name = "folded"


@compiles(folded)
def _lower(element: folded, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(folded, "sqlite")
def _sqlite(element: folded, compiler: Any, **kw: Any) -> str:
    return f"{SQLITE_FUNCTION}({compiler.process(element.clauses, **kw)})"


def lower(value: Any) -> Any:
    """SQLite's `outbox_lower`: text lowered, anything else (NULL) as it is."""
    return value.lower() if isinstance(value, str) else value
