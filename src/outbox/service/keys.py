"""The keys facet: API keys made at run time (`outbox keys create|list|revoke`,
/v1/keys) and the check of a caller's key (`authenticate`).

A new key is shown once, at creation; the database keeps only its SHA-256
(a key has 256 random bits, so a fast hash is enough). Keys in the config
file's `[auth] api_keys` keep working beside these; a name is either a
config key's or a stored key's, never both, since the name is also the
owner that scopes idempotency keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

import structlog

from outbox.clock import utcnow
from outbox.config import Scope, Settings
from outbox.errors import AuthError, Conflict, InputError, NotFound
from outbox.store.base import Store, StoredApiKey

log = structlog.get_logger("outbox.keys")

PREFIX = "ob_"
SCOPES: tuple[str, ...] = get_args(Scope)  # the config's scopes, contacts included
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def digest(key: str) -> str:
    """The hex SHA-256 the store keeps instead of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def parse_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes from a list or a comma-separated string; InputError if unknown, its
    field the list item that holds it (`scopes[1]`)."""
    found: list[str] = []
    for index, part in enumerate(scopes):
        named = [s.strip().lower() for s in part.split(",") if s.strip()]
        unknown = [s for s in named if s not in SCOPES]
        if unknown:
            raise InputError(f"unknown scope '{unknown[0]}' (known: {', '.join(SCOPES)})",
                             field=f"scopes[{index}]")
        found += named
    if not found:
        raise InputError(f"give at least one scope ({', '.join(SCOPES)})", field="scopes")
    return tuple(s for s in SCOPES if s in found)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called: the key's name (it also scopes idempotency keys), its scopes and its
    rate limits (a minute; 0: none)."""

    name: str
    scopes: frozenset[str]
    requests_per_minute: int = 0
    messages_per_minute: int = 0


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
        # Config keys by digest: compared in constant time, the plain key not kept.
        self._configured = {bytes.fromhex(digest(k.key.get_secret_value())):
                            self._principal(k.name, k.scopes, k.requests_per_minute,
                                            k.messages_per_minute)
                            for k in settings.auth.api_keys}

    async def authenticate(self, header: str | None) -> Principal:
        """The caller of `Authorization: Bearer <key>`; `AuthError` if it is no key
        of the config file's or the database's (revoked ones are no keys)."""
        if not header:
            raise AuthError("missing Authorization header")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <api key>'")
        return await self.principal_of_digest(digest(token.strip()))

    async def principal_of_digest(self, key_digest: str) -> Principal:
        """The key whose SHA-256 this is, as it is now (scopes, limits): also how an SMTP
        login is checked again at each MAIL. `AuthError` once it is revoked."""
        wanted = bytes.fromhex(key_digest)
        for known, principal in self._configured.items():
            if hmac.compare_digest(known, wanted):
                return principal
        stored = await self.store.keys.find_api_key(key_digest)
        if stored is None:
            raise AuthError("unknown API key")
        return self._principal(stored.name, stored.scopes, stored.requests_per_minute,
                               stored.messages_per_minute)

    async def authenticate_login(self, name: str, key: str) -> Principal:
        """The caller of an SMTP AUTH: the user name is the key's name, the password
        the key itself; `AuthError` unless both belong to one key."""
        try:
            principal: Principal | None = await self.authenticate(f"Bearer {key}")
        except AuthError:
            principal = None
        # Compared in constant time like the key: the answer says nothing about which
        # half was wrong.
        if principal is None or not hmac.compare_digest(principal.name.encode(), name.encode()):
            raise AuthError("unknown API key name or key",
                            hint="log in with the API key's name as the user name and the "
                                 "key as the password")
        return principal

    async def principal_named(self, name: str) -> Principal:
        """The active key called `name`, without its secret: whom mail from the SMTP
        listener's trusted networks is submitted as. `AuthError` if there is none."""
        for principal in self._configured.values():
            if principal.name == name:
                return principal
        for stored in await self.store.keys.list_api_keys():
            if stored.name == name and stored.revoked_at is None:
                return self._principal(stored.name, stored.scopes,
                                       stored.requests_per_minute, stored.messages_per_minute)
        raise AuthError(f"no active API key named '{name}'",
                        hint="create it with `outbox keys create`, or name another key in "
                             "submission.trusted_key")

    def _principal(self, name: str, scopes: Iterable[str], requests: int | None,
                   messages: int | None) -> Principal:
        """A key's own limits, else [auth]'s defaults."""
        auth = self.settings.auth
        return Principal(name, frozenset(scopes),
                         auth.requests_per_minute if requests is None else requests,
                         auth.messages_per_minute if messages is None else messages)

    async def create(self, name: str, scopes: Iterable[str], *,
                     requests_per_minute: int | None = None,
                     messages_per_minute: int | None = None) -> CreatedKey:
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise InputError("a key name is 1-64 letters, digits, '.', '_' or '-'",
                             field="name")
        if name in {k.name for k in self.settings.auth.api_keys}:
            raise Conflict(f"'{name}' is the name of a key in the config file",
                           hint="pick another name")
        for field, value in (("requests_per_minute", requests_per_minute),
                             ("messages_per_minute", messages_per_minute)):
            if value is not None and value < 0:
                raise InputError(f"{field} must be 0 (no limit) or more", field=field)
        key = new_key()
        record = StoredApiKey(name, digest(key), parse_scopes(scopes), self._clock(),
                              requests_per_minute=requests_per_minute,
                              messages_per_minute=messages_per_minute)
        await self.store.keys.create_api_key(record)
        log.info("API key created", name=name, scopes=list(record.scopes))
        return CreatedKey(record, key)

    async def list(self) -> tuple[StoredApiKey, ...]:
        return await self.store.keys.list_api_keys()

    async def revoke(self, name: str) -> None:
        if not await self.store.keys.revoke_api_key(name, self._clock()):
            if any(p.name == name for p in self._configured.values()):
                # It was "no active API key named ..." for a key that works (a stranger pass).
                raise Conflict(f"API key '{name}' is set in the config file, not stored: it "
                               "cannot be revoked here",
                               hint="remove it from [auth] api_keys (or its OUTBOX_ variable) "
                                    "and restart Outbox")
            raise NotFound(f"no active API key named '{name}'",
                           hint="`outbox keys list` shows the keys")
        log.info("API key revoked", name=name)
