"""API keys: `Authorization: Bearer <key>`, each key with scopes."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from outbox.config import Settings
from outbox.errors import AuthError, ScopeMissing


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]


class KeyRing:
    """Keys are compared by digest in constant time; the plain key is not kept."""

    def __init__(self, settings: Settings) -> None:
        self._keys = {_digest(k.key.get_secret_value()): Principal(k.name, frozenset(k.scopes))
                      for k in settings.auth.api_keys}

    def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise AuthError("missing Authorization header")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <api key>'")
        wanted = _digest(token.strip())
        for digest, principal in self._keys.items():
            if hmac.compare_digest(digest, wanted):
                return principal
        raise AuthError("unknown API key")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def require(scope: str) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the caller's key must carry `scope` (or admin)."""

    def check(request: Request) -> Principal:
        ring: KeyRing = request.app.state.keyring
        principal = ring.authenticate(request.headers.get("authorization"))
        if scope not in principal.scopes and "admin" not in principal.scopes:
            raise ScopeMissing(f"this API key lacks the '{scope}' scope")
        return principal

    return check
