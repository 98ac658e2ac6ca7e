"""open_store: the URLs people write, and clear errors for the ones that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from outbox.errors import ConfigError, StorageError
from outbox.store.factory import database_url, open_store
from outbox.store.urls import safe_url


@pytest.mark.parametrize(("url", "driver", "database"), [
    ("sqlite:///./outbox.db", "sqlite+pysqlite", "./outbox.db"),
    ("sqlite:////var/lib/outbox/outbox.db", "sqlite+pysqlite", "/var/lib/outbox/outbox.db"),
    ("sqlite+aiosqlite:///rel.db", "sqlite+pysqlite", "rel.db"),
    ("postgresql://outbox@db.example/mail", "postgresql+asyncpg", "mail"),
    ("postgres://outbox:secret@db.example:5433/mail", "postgresql+asyncpg", "mail"),
    ("postgresql+asyncpg://outbox@db.example/mail", "postgresql+asyncpg", "mail"),
    ("postgresql+psycopg://outbox@db.example/mail", "postgresql+asyncpg", "mail"),
])
def test_database_urls_are_translated(url: str, driver: str, database: str) -> None:
    parsed = database_url(url)
    assert (parsed.drivername, parsed.database) == (driver, database)


def test_a_socket_url_keeps_its_directory_and_shows_it_as_typed() -> None:
    url = "postgresql://outbox:secret@/mail?host=/var/run/postgresql"
    assert dict(database_url(url).query) == {"host": "/var/run/postgresql"}
    assert safe_url(url) == "postgresql+asyncpg://outbox:***@/mail?host=/var/run/postgresql"


def test_libpq_sslmode_becomes_asyncpg_ssl() -> None:
    parsed = database_url("postgresql://u@h/db?sslmode=require")
    assert dict(parsed.query) == {"ssl": "require"}


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://u@h/db",
                                 "not a url"])
def test_unusable_urls_are_config_errors_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        database_url(url)
    assert caught.value.message.startswith("database.url")


async def test_an_unreachable_database_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        await open_store(f"sqlite:///{tmp_path}/missing-dir/outbox.db")
    with pytest.raises(StorageError) as caught:
        await open_store("postgresql://outbox:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in caught.value.message
    with pytest.raises(StorageError) as caught:  # a socket directory where none listens
        await open_store(f"postgresql://outbox:hunter2@/nowhere?host={tmp_path}")
    assert "hunter2" not in caught.value.message
    assert f"@/nowhere?host={tmp_path}:" in caught.value.message
