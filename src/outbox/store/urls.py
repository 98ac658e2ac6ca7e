"""The configured database URL, checked and given the driver Outbox uses.

    sqlite:///./outbox.db            relative to the working directory
    sqlite:////var/lib/outbox.db     absolute
    postgresql://user@host/db        also postgres://, postgresql+asyncpg://
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from outbox.errors import ConfigError
from outbox.secrets import mask_url_password

POSTGRES_NAMES = {"postgresql", "postgres"}


def database_url(url: str) -> URL:
    """The URL with the driver Outbox uses; `ConfigError` naming the key if unusable."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise ConfigError(f"database.url: not a database URL: {mask_url_password(url)!r}"
                          ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_url(parsed)
    if backend in POSTGRES_NAMES:
        return _postgres_url(parsed)
    raise ConfigError(f"database.url: unsupported database {backend!r}; "
                      "use sqlite:///path/to/outbox.db or postgresql://user@host/db")


def _sqlite_url(parsed: URL) -> URL:
    if parsed.get_driver_name() not in ("pysqlite", "aiosqlite"):
        raise ConfigError(f"database.url: unsupported SQLite driver {parsed.drivername!r}")
    if not parsed.database or parsed.database == ":memory:":
        raise ConfigError("database.url: an in-memory SQLite database is not durable; "
                          "give a file, e.g. sqlite:///./outbox.db")
    return parsed.set(drivername="sqlite+pysqlite")


def _postgres_url(parsed: URL) -> URL:
    query = dict(parsed.query)
    for name in query:
        _check_parameter(name)
    if "sslmode" in query:  # libpq's spelling; asyncpg calls it ssl
        query.setdefault("ssl", query.pop("sslmode"))
    return parsed.set(drivername="postgresql+asyncpg", query=query)


# SQLAlchemy hands each query parameter to asyncpg.connect() as a keyword, as a string:
# these are the ones it takes that way (tried on asyncpg 0.32). The rest, libpq's own
# (sslpassword, sslcert, dbname, application_name, ...) or asyncpg's numbers (timeout,
# statement_cache_size), fail at the first connection with a TypeError.
POSTGRES_PARAMETERS = frozenset({
    "host", "port", "user", "password", "passfile", "database", "service", "servicefile",
    "sslmode", "ssl", "direct_tls", "target_session_attrs", "krbsrvname", "gsslib",
    "command_timeout", "prepared_statement_cache_size"})
# libpq parameters that asyncpg reads from the environment instead (asyncpg/connect_utils.py)
FROM_ENVIRONMENT = {"sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
                    "sslrootcert": "PGSSLROOTCERT", "sslcrl": "PGSSLCRL",
                    "sslnegotiation": "PGSSLNEGOTIATION",
                    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
                    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION"}
INSTEAD = {
    "sslpassword": "asyncpg cannot open a client key with a password: give an unencrypted "
                   "key file in PGSSLKEY (and its certificate in PGSSLCERT)",
    "dbname": "name the database in the path: postgresql://user@host/DBNAME",
}


def _check_parameter(name: str) -> None:
    """`ConfigError` for a URL parameter asyncpg cannot take; it names the parameter,
    never its value (a password, perhaps)."""
    if name in POSTGRES_PARAMETERS:
        return
    if name in FROM_ENVIRONMENT:
        instead = (f"set the environment variable {FROM_ENVIRONMENT[name]} of the Outbox "
                   "processes instead (asyncpg reads it)")
    else:
        instead = INSTEAD.get(name, "the URL takes " + ", ".join(sorted(POSTGRES_PARAMETERS)))
    shown = name if name.isprintable() else repr(name)  # the message stays one line
    raise ConfigError(f"database.url: parameter {shown} is not supported by asyncpg, the "
                      f"PostgreSQL driver Outbox uses: remove it from the URL; {instead}",
                      hint="")


def missing_sqlite_file(url: str) -> str:
    """The SQLite file's path when it does not exist (opening would create it)."""
    parsed = database_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return ""
    return "" if Path(parsed.database).exists() else parsed.database


def safe_url(url: str) -> str:
    """The URL as it can be shown, with the driver Outbox uses: the rest as typed
    (host=/var/run/postgresql), its password and secret query values (password=,
    sslpassword=, ...) masked by `mask_url_password`."""
    shown = mask_url_password(url)
    try:
        driver = database_url(url).drivername
    except ConfigError:
        return shown
    return driver + shown[shown.find("://"):]
