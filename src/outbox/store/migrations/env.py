"""Alembic environment: runs on the connection `Store.migrate()` hands over.

For `alembic revision --autogenerate` during development, set
`sqlalchemy.url` (a sync URL, e.g. sqlite:///dev.db) in an alembic.ini that
points `script_location` here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from outbox.store.tables import metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("run migrations with Store.migrate(), or set sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as own:
        run_on(own)
    engine.dispose()


run()
