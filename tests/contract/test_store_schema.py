"""The Alembic migrations build exactly the schema `tables.metadata` describes."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from outbox.store.factory import database_url, open_store
from outbox.store.tables import metadata
from tests.contract.conftest import EmptyDatabase

ADDRESS_BOOK_TABLES = {"contacts", "contact_emails", "contact_terms", "address_groups",
                       "group_members", "aliases", "address_usage", "sync_state"}
BLOB_TABLES = {"blobs", "blob_refs", "uploads", "blob_chunks", "signing_keys"}
RELAY_AUTH_TABLES = {"relay_auth", "api_keys"}
INTEGRATION_TABLES = {"webhook_endpoints", "webhook_deliveries", "rate_limit_buckets"}
GOVERNOR_TABLES = {"relay_governor", "clock_readings"}
SUPPRESSION_TABLES = {"suppressions"}
UI_TABLES = {"ui_users", "ui_sessions"}


def snapshot(conn: Connection) -> dict[str, Any]:
    """Every table's columns, keys, constraints and indexes, as reflected; on SQLite also
    each index's own SQL, since SQLAlchemy reflects no index on an expression there
    (ix_recipients_address_lower was in neither comparison)."""
    inspector = inspect(conn)
    tables: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        tables[table] = {
            "index_sql": _sqlite_index_sql(conn, table),
            "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default"),
                         c.get("autoincrement")) for c in inspector.get_columns(table)],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"],
                 tuple(fk["referred_columns"]), fk["options"].get("ondelete"))
                for fk in inspector.get_foreign_keys(table)),
            "unique": sorted((u["name"], tuple(u["column_names"]))
                             for u in inspector.get_unique_constraints(table)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]),
                               _options(i.get("dialect_options", {})))
                              for i in inspector.get_indexes(table)),
        }
    return tables


def _sqlite_index_sql(conn: Connection, table: str) -> list[tuple[str, str]]:
    if conn.dialect.name != "sqlite":
        return []
    rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                "AND tbl_name = ? AND sql IS NOT NULL", (table,)).all()
    # Quoting and spacing differ between create_all and the migrations' DDL, not meaning.
    return sorted((name, "".join(sql.replace('"', "").lower().split())) for name, sql in rows)


def _options(options: dict[str, Any]) -> str:
    return repr(sorted((key, str(value)) for key, value in options.items()))


def differences(conn: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


def _inspect(conn: Connection, create_all: bool) -> tuple[dict[str, Any], list[Any]]:
    if create_all:
        metadata.create_all(conn)
    return snapshot(conn), differences(conn)


async def _reflect(url: str, create_all: bool = False) -> tuple[dict[str, Any], list[Any]]:
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":  # SQLite's store runs the sync driver
        engine = create_engine(parsed)
        try:
            with engine.begin() as conn:
                return _inspect(conn, create_all)
        finally:
            engine.dispose()
    async_engine = create_async_engine(parsed)
    try:
        async with async_engine.begin() as aconn:
            return await aconn.run_sync(_inspect, create_all)
    finally:
        await async_engine.dispose()


# SQLAlchemy and Alembic say they skip SQLite's expression index; `index_sql` compares it.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
async def test_migrations_build_the_same_schema_as_create_all(
        empty_databases: EmptyDatabase) -> None:
    migrated_url, created_url = await empty_databases(), await empty_databases()
    store = await open_store(migrated_url)
    try:
        await store.migrate()
        await store.migrate()  # a second run is a no-op
    finally:
        await store.close()

    migrated, drift = await _reflect(migrated_url)
    created, _ = await _reflect(created_url, create_all=True)

    assert set(migrated) == {"messages", "recipients", "attempts", "events", "alerts",
                             *ADDRESS_BOOK_TABLES, *BLOB_TABLES, *RELAY_AUTH_TABLES,
                             *INTEGRATION_TABLES, *GOVERNOR_TABLES,
                             *SUPPRESSION_TABLES, *UI_TABLES}
    assert migrated == created
    assert drift == []
    if "sqlite" in migrated_url:
        assert ("ix_recipients_address_lower",
                "createindexix_recipients_address_loweronrecipients(lower(address))") in (
            migrated["recipients"]["index_sql"])
    due_index = next(i for i in migrated["messages"]["indexes"] if i[0] == "ix_messages_due_at")
    assert "due_at IS NOT NULL" in due_index[3] or "due_at is not null" in due_index[3].lower()
