"""`messages.only_relay` (migration 0016), what a claim skipping busy relays reads each
other relay's due mail by (store/sql/busy_claim.py): set for the mail waiting when the
migration runs, and read on its index rather than by walking all due mail."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import alembic.command
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import create_async_engine
from tests.pg import fresh_database

from outbox.store.sql import busy_claim
from outbox.store.sql.store import alembic_config
from outbox.store.tables import UtcDateTime
from outbox.store.urls import database_url

BEFORE = "0015_ui_sessions"
MESSAGE = ("INSERT INTO messages (id, message_id, status, sender, content, metadata, "
           "attempts, created_at, updated_at, due_at, held_seconds, hold_reason, owner) "
           "VALUES (:id, :id, :status, 's@x.test', '{}', '{}', 0, :at, :at, :due, 0, '', "
           "'app')")
RECIPIENT = ("INSERT INTO recipients (message_id, position, address, kind, relay, status, "
             "provenance) VALUES (:id, :position, :address, 'to', :relay, :status, '')")
AT = datetime(2030, 1, 1, 12, tzinfo=UTC)
TIMES = (sqlalchemy.bindparam("at", type_=UtcDateTime()),
         sqlalchemy.bindparam("due", type_=UtcDateTime()))


def upgrade(conn: sqlalchemy.Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    alembic.command.upgrade(config, revision)


def old_mail(conn: sqlalchemy.Connection) -> None:
    """Mail as revision 0015 held it: one relay waiting, several relays waiting, one
    relay sent (nothing due)."""
    upgrade(conn, BEFORE)
    for id, status, due, relays in (("one", "queued", AT, ["slow", "slow"]),
                                    ("several", "deferred", AT, ["slow", "fast"]),
                                    ("sent", "sent", None, ["slow"])):
        conn.execute(sqlalchemy.text(MESSAGE).bindparams(*TIMES),
                     {"id": id, "status": status, "at": AT, "due": due})
        for position, relay in enumerate(relays):
            conn.execute(sqlalchemy.text(RECIPIENT), {
                "id": id, "position": position, "address": f"r{position}@x.test",
                "relay": relay, "status": "sent" if status == "sent" else "pending"})
    upgrade(conn, "head")


def only_relays(conn: sqlalchemy.Connection) -> dict[str, str | None]:
    found = conn.execute(sqlalchemy.text("SELECT id, only_relay FROM messages ORDER BY id"))
    return {id: relay for id, relay in found}


def on(url: str, work: Callable[[sqlalchemy.Connection], object]) -> object:
    if url.startswith("sqlite"):
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.begin() as conn:
                return work(conn)
        finally:
            engine.dispose()

    async def run() -> object:
        engine = create_async_engine(database_url(url))
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(work)
        finally:
            await engine.dispose()
    return asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgresql"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/outbox.db"
        return
    with fresh_database("outbox_only_relay") as url:
        yield url


def test_the_migration_names_the_one_relay_of_mail_waiting(empty: str) -> None:
    on(empty, old_mail)
    assert on(empty, only_relays) == {"one": "slow", "several": None, "sent": None}


def test_the_claim_past_busy_relays_reads_each_relay_on_its_index(tmp_path: Path) -> None:
    """SQLite's plans for the statements of busy_claim.py: each a search of
    ix_messages_only_relay_due_at (a seek for each relay, a range for its due mail),
    none a scan of every due message."""
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/outbox.db")
    with engine.begin() as conn:
        upgrade(conn, "head")
        for statement in (busy_claim._FIRST_RELAY, busy_claim._NEXT_RELAY,
                          busy_claim._OF_RELAY[False], busy_claim._MIXED[False]):
            compiled = statement.compile(conn)
            params = {name: "x" for name in compiled.params}
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}", tuple(params.values())))
            assert re.search(r"SEARCH messages USING (COVERING )?INDEX "
                             r"ix_messages_only_relay_due_at \(only_relay", plan), plan
    engine.dispose()
