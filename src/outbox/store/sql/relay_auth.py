"""`SqlRelayAuth`: `store.base.RelayAuthStore` over a `Runner`, and its SQL: each
relay's login state and stored credentials (`relay_auth`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from outbox.core.model import Event
from outbox.store.sql import relay_holds
from outbox.store.sql.runner import Runner
from outbox.store.sql.upsert import upsert
from outbox.store.sql.wakeup import Wakeup
from outbox.store.tables import relay_auth
from outbox.store.values import NEEDS_ATTENTION, RELAY_OK, RelayAuth

r = relay_auth


def _ensure_row(conn: Connection, relay: str, now: datetime) -> None:
    """Insert the relay's default row unless it exists (concurrent nodes too)."""
    conn.execute(upsert(conn, r).values(relay=relay, updated_at=now)
                 .on_conflict_do_nothing(index_elements=["relay"]))


def _to_relay_auth(row: Any) -> RelayAuth:
    return RelayAuth(relay=row.relay, state=row.state, version=row.version,
                     credentials=row.credentials, reason=row.reason, guidance=row.guidance,
                     updated_at=row.updated_at)


def load_relay_credentials(conn: Connection, relay: str) -> RelayAuth:
    row = conn.execute(select(r).where(r.c.relay == relay)).first()
    return _to_relay_auth(row) if row is not None else RelayAuth(relay)


def save_relay_credentials(conn: Connection, relay: str, sealed: str | None,
                           now: datetime) -> int:
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


def _locked(conn: Connection, relay: str, now: datetime) -> tuple[int, str]:
    """The relay's credentials version and state, its row locked until the transaction
    ends (on SQLite the writer is alone anyway): a login failure and new credentials are
    applied one after the other, never interleaved."""
    _ensure_row(conn, relay, now)
    row = conn.execute(select(r.c.version, r.c.state).where(r.c.relay == relay)
                       .with_for_update()).one()
    return int(row.version), row.state


def hold_for_relay(conn: Connection, relay: str, version: int, reason: str, guidance: str,
                   now: datetime, hold_reason: str, event: Event) -> tuple[bool, int] | None:
    """needs_attention and the first chunk of its waiting mail held (`hold_more` holds
    the rest), unless new credentials (another version) arrived meanwhile: None then.
    (changed, held)."""
    if _locked(conn, relay, now)[0] != version:
        return None
    changed = set_relay_state(conn, relay, NEEDS_ATTENTION, reason, guidance, now, version)
    return changed, relay_holds.hold_relay(conn, relay, now, hold_reason, event)


def hold_more(conn: Connection, relay: str, version: int, now: datetime, hold_reason: str,
              event: Event) -> int:
    """The next chunk held while the relay still needs attention with these credentials;
    0 once there is none, or new credentials or a working login came in between."""
    if _locked(conn, relay, now) != (version, NEEDS_ATTENTION):
        return 0
    return relay_holds.hold_relay(conn, relay, now, hold_reason, event)


def mark_ok(conn: Connection, relay: str, version: int, now: datetime) -> int | None:
    """ok again and the first chunk of its held mail released (`release_more` releases
    the rest); None when the state was not this version's."""
    if _locked(conn, relay, now)[0] != version:
        return None
    if not set_relay_state(conn, relay, RELAY_OK, "", "", now, version):
        return None
    return relay_holds.release_relay(conn, relay, now)


def release_more(conn: Connection, relay: str, version: int, now: datetime) -> int:
    """The next chunk released while the relay is still ok with these credentials; 0 once
    there is none, or its login failed again in between (its mail stays held then)."""
    if _locked(conn, relay, now) != (version, RELAY_OK):
        return 0
    return relay_holds.release_relay(conn, relay, now)


def store_credentials(conn: Connection, relay: str, sealed: str | None,
                      now: datetime) -> tuple[int, int]:
    """New credentials (None: the config's again), the relay ok and the first chunk of
    its held mail released, at once (`release_more` releases the rest).
    (version, released)."""
    _locked(conn, relay, now)
    version = save_relay_credentials(conn, relay, sealed, now)
    set_relay_state(conn, relay, RELAY_OK, "", "", now, version)
    return version, relay_holds.release_relay(conn, relay, now)


def relay_states(conn: Connection) -> tuple[RelayAuth, ...]:
    return tuple(_to_relay_auth(row) for row in conn.execute(select(r).order_by(r.c.relay)))


class SqlRelayAuth:
    """The relay-auth verbs over one runner."""

    def __init__(self, runner: Runner, wakeup: Wakeup) -> None:
        self._run = runner
        self._wakeup = wakeup  # released mail is due at once: the workers hear of it

    async def load_relay_credentials(self, relay: str) -> RelayAuth:
        return await self._run.read(load_relay_credentials, relay)

    async def save_relay_credentials(self, relay: str, sealed: str, now: datetime) -> int:
        return await self._run.write(save_relay_credentials, relay, sealed, now)

    async def rotate_relay_credentials(self, relay: str, sealed: str, version: int,
                                       now: datetime) -> bool:
        return await self._run.write(rotate_relay_credentials, relay, sealed, version, now)

    async def set_relay_state(self, relay: str, state: str, reason: str, guidance: str,
                              now: datetime, *, version: int | None = None) -> bool:
        return await self._run.write(set_relay_state, relay, state, reason, guidance, now,
                                     version)

    async def hold_for_relay(self, relay: str, version: int, reason: str, guidance: str,
                             now: datetime, hold_reason: str,
                             event: Event) -> tuple[bool, int] | None:
        first = await self._run.write(hold_for_relay, relay, version, reason, guidance, now,
                                      hold_reason, event)
        if first is None:
            return None
        changed, held = first
        return changed, await relay_holds.in_chunks(held, lambda: self._run.write(
            hold_more, relay, version, now, hold_reason, event))

    async def mark_ok(self, relay: str, version: int, now: datetime) -> int | None:
        released = await self._run.write(mark_ok, relay, version, now)
        return None if released is None else await self._release_rest(
            released, relay, version, now)

    async def store_credentials(self, relay: str, sealed: str | None,
                                now: datetime) -> tuple[int, int]:
        version, released = await self._run.write(store_credentials, relay, sealed, now)
        return version, await self._release_rest(released, relay, version, now)

    async def release_left_held(self, relay: str, now: datetime) -> int:
        auth = await self._run.read(load_relay_credentials, relay)
        if auth.state != RELAY_OK:
            return 0
        first = await self._run.write(release_more, relay, auth.version, now)
        return await self._release_rest(first, relay, auth.version, now)

    async def _release_rest(self, first: int, relay: str, version: int, now: datetime) -> int:
        """`first` (released already) and the rest of the relay's held mail, a chunk per
        transaction while its state stays; the workers are woken for each chunk."""
        async def chunk() -> int:
            released = await self._run.write(release_more, relay, version, now)
            if released:
                self._wakeup.announce()
            return released
        if first:
            self._wakeup.announce()
        return await relay_holds.in_chunks(first, chunk)

    async def relay_states(self) -> tuple[RelayAuth, ...]:
        return await self._run.read(relay_states)
