"""Old history for retention tests and the retention bench: copies of real finished
messages (with their recipients, attempts and events) stamped long ago, written
straight into a SQLite file while no process writes to it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

STAMPS = {"created_at", "updated_at", "at", "started_at", "finished_at"}
CHILDREN = ("recipients", "attempts", "events")


def plant_old_copies(path: str, copies: int, age: timedelta) -> int:
    """`copies` copies of the sent messages in the file (cycling through them), stamped
    `age` ago; returns how many messages were written."""
    old = (datetime.now(UTC) - age).strftime("%Y-%m-%d %H:%M:%S.%f")
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        templates = [dict(row) for row in db.execute(
            "SELECT * FROM messages WHERE status = 'sent' ORDER BY id")]
        assert templates, "deliver some messages first: they are the templates"
        children = {table: _children(db, table) for table in CHILDREN}
        with db:
            for n in range(copies):
                template = templates[n % len(templates)]
                _copy(db, template, children, f"old{n:07d}", old)
    finally:
        db.close()
    return copies


def _children(db: sqlite3.Connection, table: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in db.execute(f"SELECT * FROM {table}"):
        values = dict(row)
        values.pop("id", None)  # a new rowid for attempts and events
        found.setdefault(values["message_id"], []).append(values)
    return found


def _copy(db: sqlite3.Connection, template: dict[str, Any],
          children: dict[str, dict[str, list[dict[str, Any]]]], id: str, old: str) -> None:
    message = {**_restamped(template, old), "id": id, "message_id": f"<{id}@old.test>",
               "idempotency_key": None}
    _insert(db, "messages", message)
    for table, rows in children.items():
        for row in rows.get(template["id"], ()):
            _insert(db, table, {**_restamped(row, old), "message_id": id})


def _restamped(row: dict[str, Any], old: str) -> dict[str, Any]:
    return {key: (old if key in STAMPS and value is not None else value)
            for key, value in row.items()}


def _insert(db: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(row.values()))
