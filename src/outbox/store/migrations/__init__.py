"""Alembic migrations, run by `Store.migrate()`; no alembic.ini is needed."""
