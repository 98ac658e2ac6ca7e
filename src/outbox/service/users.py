"""The web UI's users: argon2id password hashes, roles, sign-in with throttling, the
key that signs session cookies and the sessions themselves (both shared by every node
through the database).

    users = outbox.users
    await users.create("ann", "sender", password)
    user = await users.sign_in("ann", password, client="127.0.0.1")  # AuthError if wrong
    id = await users.start_session(user)       # the cookie carries it
    await users.session_user(id)               # the user while the session lasts
    await users.end_session(id)                # signed out, on every node at once
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from outbox.clock import utcnow
from outbox.config import Settings
from outbox.errors import AuthError, InputError, NotFound, RateLimited
from outbox.store.base import Store, UiUser

log = structlog.get_logger("outbox.users")

__all__ = ["ROLES", "LoginThrottle", "UiUser", "UiUsers", "WrongPassword"]
ROLES = ("admin", "sender", "viewer")
MIN_PASSWORD = 8
_HASHER = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs as long as a
# wrong password (no user enumeration by timing).
# Made at the first sign-in, not at import: hashing costs ~100 ms of every CLI start.
@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


class WrongPassword(AuthError):
    """Wrong user name or password."""

    code = "wrong_password"
    hint = "check the user name and password; an administrator can reset it with " \
           "`outbox users set-password NAME --password-stdin`"


class LoginThrottle:
    """At most `attempts` failed sign-ins per key (a user name, a client address) within
    `window` seconds; a success forgets the user name's failures."""

    def __init__(self, attempts: int, window: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window = window
        self._now = monotonic
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, *keys: str) -> int:
        """Seconds until one of `keys` may try again; 0: now."""
        now = self._now()
        waits = [0.0]
        for key in keys:
            recent = self._recent(key, now)
            if len(recent) >= self.attempts:
                waits.append(recent[0] + self.window - now)
        return int(max(waits) + 0.999)

    def failed(self, *keys: str) -> None:
        now = self._now()
        for key in keys:
            self._recent(key, now).append(now)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        recent = self._failures.setdefault(key, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        return recent


class UiUsers:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self._clock = clock
        ui = settings.ui
        self.throttle = LoginThrottle(ui.login_attempts, ui.login_window.total_seconds())
        self.session_max_age = ui.session_max_age
        self._session_key: bytes | None = None

    async def create(self, name: str, role: str, password: str) -> UiUser:
        name = _checked_name(name)
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}, not '{role}'",
                             field="role")
        now = self._clock()
        user = UiUser(name, role, await _hash(password), now, now)
        await self.store.ui_users.create_ui_user(user)
        log.info("ui user created", user=name, role=role)
        return user

    async def set_password(self, name: str, password: str) -> None:
        if not await self.store.ui_users.update_ui_user(name, self._clock(),
                                                       password_hash=await _hash(password)):
            raise NotFound(f"no UI user named '{name}'")
        log.info("ui user password changed; its sessions ended", user=name)

    async def set_disabled(self, name: str, disabled: bool) -> None:
        if not await self.store.ui_users.update_ui_user(name, self._clock(), disabled=disabled):
            raise NotFound(f"no UI user named '{name}'")
        log.info("ui user disabled; its sessions ended" if disabled else "ui user enabled",
                 user=name)

    async def start_session(self, user: UiUser) -> str:
        """A new session of `user`: its id, for the cookie; the store keeps only a hash."""
        id = secrets.token_urlsafe(32)
        now = self._clock()
        await self.store.ui_users.start_ui_session(_hashed(id), user.name, now,
                                                   now + self.session_max_age)
        return id

    async def session_user(self, id: str) -> UiUser | None:
        """The active user of session `id`; None once it ended, expired or its user was
        disabled or removed."""
        if not id:
            return None
        user = await self.store.ui_users.find_ui_session(_hashed(id), self._clock())
        return user if user is not None and user.is_active else None

    async def end_session(self, id: str) -> None:
        if id:
            await self.store.ui_users.end_ui_sessions(id_hash=_hashed(id))

    async def sign_in(self, name: str, password: str, client: str) -> UiUser:
        """The user, or `WrongPassword`; `RateLimited` after too many failures."""
        keys = (f"user:{name.strip().lower()}", f"client:{client}")
        wait = self.throttle.retry_after(*keys)
        if wait:
            raise RateLimited("too many failed sign-ins", retry_after=wait,
                              limit=self.throttle.attempts,
                              hint=f"wait {wait} s before trying again")
        user = await self.store.ui_users.find_ui_user(name.strip())
        ok = await _verify(user.password_hash if user else _dummy_hash(), password)
        if user is None or not ok or not user.is_active:
            self.throttle.failed(*keys)
            log.info("ui sign-in refused", user=name[:64], client=client)
            raise WrongPassword()
        self.throttle.forget(keys[0])
        log.info("ui sign-in", user=user.name, client=client)
        return user

    async def session_key(self) -> bytes:
        if self._session_key is None:
            self._session_key = await self.store.keys.signing_key(
                "ui-session", secrets.token_bytes(32), self._clock())
        return self._session_key

    # `list` last: below it, the name shadows the builtin in annotations.
    async def list(self) -> tuple[UiUser, ...]:
        return await self.store.ui_users.list_ui_users()


def _hashed(session_id: str) -> str:
    """What the database keeps of a session id: a copy of the database (a backup) signs
    nobody in."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() or not c.isprintable() for c in name):
        raise InputError("a user name is 1 to 64 printable characters without spaces",
                         field="name")
    return name


async def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"a password needs at least {MIN_PASSWORD} characters",
                         field="password")
    return await asyncio.to_thread(_HASHER.hash, password)


async def _verify(hashed: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _HASHER.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
