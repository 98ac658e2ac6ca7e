"""API keys: `Authorization: Bearer <key>`, each key with scopes.

Keys come from the config file (`[auth] api_keys`) and from the database
(`outbox keys create`, stored as SHA-256 digests; see `outbox.apikeys`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from outbox import apikeys
from outbox.config import Settings
from outbox.errors import AuthError, ScopeMissing
from outbox.store.base import Store


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]


class KeyRing:
    """Keys are compared by digest in constant time; the plain key is not kept.
    With a store, keys made by `outbox keys create` are looked up by digest."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self._keys = {_digest(k.key.get_secret_value()): Principal(k.name, frozenset(k.scopes))
                      for k in settings.auth.api_keys}
        self._store = store

    async def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise AuthError("missing Authorization header")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <api key>'")
        wanted = _digest(token.strip())
        for digest, principal in self._keys.items():
            if hmac.compare_digest(digest, wanted):
                return principal
        stored = await self._store.find_api_key(wanted.hex()) if self._store else None
        if stored is None:
            raise AuthError("unknown API key")
        return Principal(stored.name, frozenset(stored.scopes))


def _digest(key: str) -> bytes:
    return bytes.fromhex(apikeys.digest(key))


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller's key must carry `scope` (or admin)."""

    async def check(request: Request) -> Principal:
        ring: KeyRing = request.app.state.keyring
        principal = await ring.authenticate(request.headers.get("authorization"))
        if scope not in principal.scopes and "admin" not in principal.scopes:
            raise ScopeMissing(f"this API key lacks the '{scope}' scope")
        return principal

    return check
