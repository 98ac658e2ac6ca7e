"""API keys made at run time: `outbox keys create|list|revoke` (and /v1/keys).

A new key is shown once, at creation; the database keeps only its SHA-256
(a key has 256 random bits, so a fast hash is enough). Keys in the config
file's `[auth] api_keys` keep working beside these; a name is either a
config key's or a stored key's, never both, since the name is also the
owner that scopes idempotency keys.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog

from outbox.clock import utcnow
from outbox.config import Settings
from outbox.errors import Conflict, InputError, NotFound
from outbox.store.base import Store, StoredApiKey

log = structlog.get_logger("outbox.apikeys")

PREFIX = "ob_"
SCOPES = ("send", "read", "admin")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def digest(key: str) -> str:
    """The hex SHA-256 the store keeps instead of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def parse_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes from a list or a comma-separated string; InputError if unknown."""
    found: list[str] = []
    for part in scopes:
        found += [s.strip().lower() for s in part.split(",") if s.strip()]
    unknown = sorted(set(found) - set(SCOPES))
    if unknown:
        raise InputError(f"unknown scope '{unknown[0]}' (known: {', '.join(SCOPES)})",
                         field="scopes")
    if not found:
        raise InputError(f"give at least one scope ({', '.join(SCOPES)})", field="scopes")
    return tuple(s for s in SCOPES if s in found)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    record: StoredApiKey
    key: str  # shown once, never stored


class ApiKeys:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock

    async def create(self, name: str, scopes: Iterable[str]) -> CreatedKey:
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise InputError("a key name is 1-64 letters, digits, '.', '_' or '-'",
                             field="name")
        if name in {k.name for k in self.settings.auth.api_keys}:
            raise Conflict(f"'{name}' is the name of a key in the config file",
                           hint="pick another name")
        key = new_key()
        record = StoredApiKey(name, digest(key), parse_scopes(scopes), self._clock())
        await self.store.create_api_key(record)
        log.info("API key created", name=name, scopes=list(record.scopes))
        return CreatedKey(record, key)

    async def list(self) -> tuple[StoredApiKey, ...]:
        return await self.store.list_api_keys()

    async def revoke(self, name: str) -> None:
        if not await self.store.revoke_api_key(name, self._clock()):
            raise NotFound(f"no active API key named '{name}'",
                           hint="`outbox keys list` shows the keys")
        log.info("API key revoked", name=name)
