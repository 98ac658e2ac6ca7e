"""`SqlKeys`: `store.base.KeyStore` over a `Runner`, and its SQL: hashed API keys
(`api_keys`) and the secrets every node shares (`signing_keys`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from outbox.errors import Conflict
from outbox.store.sql.runner import Runner
from outbox.store.sql.upsert import upsert
from outbox.store.tables import api_keys, signing_keys
from outbox.store.values import StoredApiKey

_ACTIVE = api_keys.c.revoked_at.is_(None)


def _to_key(row: Any) -> StoredApiKey:
    return StoredApiKey(name=row.name, digest=row.digest, scopes=tuple(row.scopes),
                        created_at=row.created_at, revoked_at=row.revoked_at,
                        requests_per_minute=row.requests_per_minute,
                        messages_per_minute=row.messages_per_minute)


def create_api_key(conn: Connection, key: StoredApiKey) -> None:
    conn.execute(insert(api_keys).values(name=key.name, digest=key.digest,
                                         scopes=list(key.scopes), created_at=key.created_at,
                                         revoked_at=key.revoked_at,
                                         requests_per_minute=key.requests_per_minute,
                                         messages_per_minute=key.messages_per_minute))


def find_api_key(conn: Connection, digest: str) -> StoredApiKey | None:
    row = conn.execute(select(api_keys).where(api_keys.c.digest == digest, _ACTIVE)).first()
    return _to_key(row) if row is not None else None


def list_api_keys(conn: Connection) -> tuple[StoredApiKey, ...]:
    query = select(api_keys).order_by(api_keys.c.name, api_keys.c.created_at, api_keys.c.id)
    return tuple(_to_key(row) for row in conn.execute(query))


def revoke_api_key(conn: Connection, name: str, now: datetime) -> bool:
    stmt = update(api_keys).where(api_keys.c.name == name, _ACTIVE).values(revoked_at=now)
    return bool(conn.execute(stmt).rowcount)


def signing_key(conn: Connection, name: str, candidate: bytes, now: datetime) -> bytes:
    conn.execute(upsert(conn, signing_keys)
                 .values(name=name, secret=candidate, created_at=now)
                 .on_conflict_do_nothing(index_elements=[signing_keys.c.name]))
    secret = conn.execute(select(signing_keys.c.secret)
                          .where(signing_keys.c.name == name)).scalar_one()
    return bytes(secret)


class SqlKeys:
    """The key store's verbs over one runner."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def create_api_key(self, key: StoredApiKey) -> None:
        try:
            await self._run.write(create_api_key, key)
        except Conflict:
            raise Conflict(f"an API key named '{key.name}' already exists",
                           hint="revoke it first (`outbox keys revoke NAME`) or pick another "
                           "name") from None

    async def find_api_key(self, digest: str) -> StoredApiKey | None:
        return await self._run.read(find_api_key, digest)

    async def list_api_keys(self) -> tuple[StoredApiKey, ...]:
        return await self._run.read(list_api_keys)

    async def revoke_api_key(self, name: str, now: datetime) -> bool:
        return await self._run.write(revoke_api_key, name, now)

    async def signing_key(self, name: str, candidate: bytes, now: datetime) -> bytes:
        return await self._run.write(signing_key, name, candidate, now)
