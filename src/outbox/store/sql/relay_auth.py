"""The relay-authentication verbs of `store.base.Store` and their SQL: relay
state and stored credentials (`relay_auth`), and hashed API keys (`api_keys`).
`SqlStore` inherits the verbs from `RelayAuthVerbs`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from outbox.errors import Conflict
from outbox.store.base import RelayAuth, StoredApiKey
from outbox.store.tables import api_keys, relay_auth

r = relay_auth


def _ensure_row(conn: Connection, relay: str, now: datetime) -> None:
    """Insert the relay's default row unless it exists (concurrent nodes too)."""
    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(r).values(relay=relay, updated_at=now)
                 .on_conflict_do_nothing(index_elements=["relay"]))


def _to_relay_auth(row: Any) -> RelayAuth:
    return RelayAuth(relay=row.relay, state=row.state, version=row.version,
                     credentials=row.credentials, reason=row.reason, guidance=row.guidance,
                     updated_at=row.updated_at)


def load_relay_credentials(conn: Connection, relay: str) -> RelayAuth:
    row = conn.execute(select(r).where(r.c.relay == relay)).first()
    return _to_relay_auth(row) if row is not None else RelayAuth(relay)


def save_relay_credentials(conn: Connection, relay: str, sealed: str, now: datetime) -> int:
    _ensure_row(conn, relay, now)
    stmt = (update(r).where(r.c.relay == relay)
            .values(credentials=sealed, version=r.c.version + 1, updated_at=now)
            .returning(r.c.version))
    return int(conn.execute(stmt).scalar_one())


def rotate_relay_credentials(conn: Connection, relay: str, sealed: str, version: int,
                             now: datetime) -> bool:
    if version == 0:  # the config's credentials, maybe rotated for the first time
        _ensure_row(conn, relay, now)
    stmt = (update(r).where(r.c.relay == relay, r.c.version == version)
            .values(credentials=sealed, updated_at=now))
    return bool(conn.execute(stmt).rowcount)


def set_relay_state(conn: Connection, relay: str, state: str, reason: str, guidance: str,
                    now: datetime, version: int | None) -> bool:
    _ensure_row(conn, relay, now)
    stmt = (update(r).where(r.c.relay == relay)
            .where((r.c.state != state) | (r.c.reason != reason) | (r.c.guidance != guidance))
            .values(state=state, reason=reason, guidance=guidance, updated_at=now))
    if version is not None:
        stmt = stmt.where(r.c.version == version)
    return bool(conn.execute(stmt).rowcount)


def relay_states(conn: Connection) -> tuple[RelayAuth, ...]:
    return tuple(_to_relay_auth(row) for row in conn.execute(select(r).order_by(r.c.relay)))


# -- API keys ---------------------------------------------------------------------------------

_ACTIVE = api_keys.c.revoked_at.is_(None)


def _to_key(row: Any) -> StoredApiKey:
    return StoredApiKey(name=row.name, digest=row.digest, scopes=tuple(row.scopes),
                        created_at=row.created_at, revoked_at=row.revoked_at)


def create_api_key(conn: Connection, key: StoredApiKey) -> None:
    conn.execute(insert(api_keys).values(name=key.name, digest=key.digest,
                                         scopes=list(key.scopes), created_at=key.created_at,
                                         revoked_at=key.revoked_at))


def find_api_key(conn: Connection, digest: str) -> StoredApiKey | None:
    row = conn.execute(select(api_keys).where(api_keys.c.digest == digest, _ACTIVE)).first()
    return _to_key(row) if row is not None else None


def list_api_keys(conn: Connection) -> tuple[StoredApiKey, ...]:
    query = select(api_keys).order_by(api_keys.c.name, api_keys.c.created_at, api_keys.c.id)
    return tuple(_to_key(row) for row in conn.execute(query))


def revoke_api_key(conn: Connection, name: str, now: datetime) -> bool:
    stmt = update(api_keys).where(api_keys.c.name == name, _ACTIVE).values(revoked_at=now)
    return bool(conn.execute(stmt).rowcount)


class RelayAuthVerbs:
    """Mixed into `SqlStore`, which supplies the transaction runners."""

    _read: Callable[..., Awaitable[Any]]
    _write: Callable[..., Awaitable[Any]]

    async def load_relay_credentials(self, relay: str) -> RelayAuth:
        found: RelayAuth = await self._read(load_relay_credentials, relay)
        return found

    async def save_relay_credentials(self, relay: str, sealed: str, now: datetime) -> int:
        version: int = await self._write(save_relay_credentials, relay, sealed, now)
        return version

    async def rotate_relay_credentials(self, relay: str, sealed: str, version: int,
                                       now: datetime) -> bool:
        saved: bool = await self._write(rotate_relay_credentials, relay, sealed, version, now)
        return saved

    async def set_relay_state(self, relay: str, state: str, reason: str, guidance: str,
                              now: datetime, *, version: int | None = None) -> bool:
        changed: bool = await self._write(set_relay_state, relay, state, reason, guidance,
                                          now, version)
        return changed

    async def relay_states(self) -> tuple[RelayAuth, ...]:
        found: tuple[RelayAuth, ...] = await self._read(relay_states)
        return found

    async def create_api_key(self, key: StoredApiKey) -> None:
        try:
            await self._write(create_api_key, key)
        except Conflict:
            raise Conflict(f"an API key named '{key.name}' already exists",
                           hint="revoke it first (`outbox keys revoke NAME`) or pick another "
                           "name") from None

    async def find_api_key(self, digest: str) -> StoredApiKey | None:
        found: StoredApiKey | None = await self._read(find_api_key, digest)
        return found

    async def list_api_keys(self) -> tuple[StoredApiKey, ...]:
        found: tuple[StoredApiKey, ...] = await self._read(list_api_keys)
        return found

    async def revoke_api_key(self, name: str, now: datetime) -> bool:
        revoked: bool = await self._write(revoke_api_key, name, now)
        return revoked
