"""`SqlStore`: the root store (`store.base.Store`), shared by both backends.

It composes one class per aggregate over the backend's `Runner`
(`store.messages`, `store.relay_auth`, `store.keys`, `store.alerts`,
`store.contacts`, `store.blob_index`, `store.webhooks`, `store.rate_limits`,
`store.governor`, `store.suppressions`, `store.ui_users`) and
holds the verbs about the database as a whole: ping, migrate, describe, close. A backend (sqlite.py,
postgres.py) builds it from its runner, its claim statement (`pick_due`),
and, where it has them, its wake-up, group commit and migration lock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, select, text

from outbox.errors import StorageError
from outbox.store.base import (
    AlertStore,
    ArchiveStore,
    BlobIndex,
    ContactStore,
    GovernorStore,
    IntegrityStore,
    KeyStore,
    Liveness,
    MessageStore,
    RateLimitStore,
    RelayAuthStore,
    RetentionStore,
    SuppressionStore,
    UiUserStore,
    WebhookStore,
)

if TYPE_CHECKING:
    from alembic.config import Config
from outbox.store.sql.address_book import SqlContacts
from outbox.store.sql.alerts import SqlAlerts
from outbox.store.sql.archive import Snapshot, SqlArchive
from outbox.store.sql.blob_index import SqlBlobIndex
from outbox.store.sql.governor import SqlGovernor
from outbox.store.sql.group_commit import GroupCommit
from outbox.store.sql.integrity import SqlIntegrity
from outbox.store.sql.keys import SqlKeys
from outbox.store.sql.messages import PickDue, SqlMessages
from outbox.store.sql.rate_limits import SqlRateLimits
from outbox.store.sql.relay_auth import SqlRelayAuth
from outbox.store.sql.retention import SqlRetention
from outbox.store.sql.runner import Runner
from outbox.store.sql.suppressions import SqlSuppressions
from outbox.store.sql.ui_users import SqlUiUsers
from outbox.store.sql.wakeup import Wakeup
from outbox.store.sql.webhooks import SqlWebhooks
from outbox.store.values import DatabaseInfo

MIGRATIONS = Path(__file__).parent.parent / "migrations"
LockSchema = Callable[[Connection], None]


class SqlStore:
    """The facets over one runner, and the database's own verbs."""

    def __init__(self, runner: Runner, pick_due: PickDue, liveness: Liveness, *,
                 wakeup: Wakeup | None = None,
                 lock_schema: LockSchema | None = None, snapshot: Snapshot | None = None,
                 locked_out: Callable[[], float | None] | None = None) -> None:
        self._run = runner
        self._locked_out = locked_out or _never_locked_out
        self._wakeup = wakeup or Wakeup()
        self._inserter = GroupCommit(runner, self._wakeup.notice())
        self._lock_schema = lock_schema
        self.messages: MessageStore = SqlMessages(runner, pick_due, self._wakeup, self._inserter)
        self.relay_auth: RelayAuthStore = SqlRelayAuth(runner, self._wakeup)
        self.keys: KeyStore = SqlKeys(runner)
        self.alerts: AlertStore = SqlAlerts(runner)
        self.contacts: ContactStore = SqlContacts(runner)
        self.blob_index: BlobIndex = SqlBlobIndex(runner)
        self.webhooks: WebhookStore = SqlWebhooks(runner)
        self.rate_limits: RateLimitStore = SqlRateLimits(runner)
        self.governor: GovernorStore = SqlGovernor(runner, self._wakeup)
        self.suppressions: SuppressionStore = SqlSuppressions(runner)
        self.archive: ArchiveStore = SqlArchive(runner, snapshot or runner.read)
        self.integrity: IntegrityStore = SqlIntegrity(runner)
        self.retention: RetentionStore = SqlRetention(runner)
        self.ui_users: UiUserStore = SqlUiUsers(runner)
        self.liveness = liveness

    async def ping(self) -> None:
        await self._run.read(ping)

    def writes_locked_out(self) -> float | None:
        return self._locked_out()

    async def migrate(self) -> None:
        await self._run.write(self._migrate)

    def _migrate(self, conn: Connection) -> None:
        if self._lock_schema is not None:  # where the write transaction does not serialise
            self._lock_schema(conn)
        upgrade_schema(conn)

    async def describe_database(self) -> DatabaseInfo:
        return await self._run.read(describe_database)

    async def database_time(self) -> datetime | None:
        return await self._run.read(database_time)

    async def check_writable(self) -> None:
        await self._run.write(check_writable)

    async def close(self) -> None:
        await self._inserter.close()
        await self._wakeup.close()
        await self._run.close()


def _never_locked_out() -> float | None:
    return None  # PostgreSQL locks rows, never the whole database


def ping(conn: Connection) -> None:
    conn.execute(select(1))


def database_time(conn: Connection) -> datetime | None:
    if conn.dialect.name != "postgresql":
        return None
    found = conn.execute(select(func.clock_timestamp())).scalar()
    return found if isinstance(found, datetime) else None


def check_writable(conn: Connection) -> None:
    """Inside a write transaction: does the database take writes?"""
    if conn.dialect.name == "postgresql":
        read_only = conn.execute(text("SELECT pg_is_in_recovery() OR "
                                      "current_setting('transaction_read_only') = 'on'")).scalar()
        if read_only:
            raise StorageError("the database is read-only (a replica, or "
                               "default_transaction_read_only is on)",
                               hint="point [database] url at the primary")
        return
    # Rewriting the header's user_version to itself is a real write, and harmless.
    version = conn.execute(text("PRAGMA user_version")).scalar()
    conn.execute(text(f"PRAGMA user_version = {int(version or 0)}"))


def upgrade_schema(conn: Connection) -> None:
    """Run the Alembic migrations up to the head, on this connection."""
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def describe_database(conn: Connection) -> DatabaseInfo:
    from alembic.migration import MigrationContext  # alembic loads only when asked

    backend = conn.dialect.name
    postgres = backend == "postgresql"
    version = conn.execute(text("SHOW server_version" if postgres
                                else "SELECT sqlite_version()")).scalar()
    server_time = conn.execute(select(func.now())).scalar() if postgres else None
    return DatabaseInfo(backend=backend, version=str(version),
                        revision=MigrationContext.configure(conn).get_current_revision(),
                        head=head_revision(), server_time=server_time)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return str(head)


def is_known_revision(revision: str) -> bool:
    """Whether this Outbox's migrations know `revision`."""
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for an unknown or malformed id
        return False


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
