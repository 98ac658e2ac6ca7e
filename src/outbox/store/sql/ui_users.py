"""`SqlUiUsers`: `store.base_integrations.UiUserStore` over a `Runner`: the web UI's
users (`ui_users`), their sessions (`ui_sessions`) and the per-minute event counts of
the dashboard's chart."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from outbox.errors import Conflict
from outbox.store.base_integrations import UiUser
from outbox.store.sql.runner import Runner
from outbox.store.tables import events
from outbox.store.tables_ui import ui_sessions, ui_users

u = ui_users
s = ui_sessions


def _to_user(row: Any) -> UiUser:
    return UiUser(name=row.name, role=row.role, password_hash=row.password_hash,
                  created_at=row.created_at, updated_at=row.updated_at,
                  disabled_at=row.disabled_at)


def create_ui_user(conn: Connection, user: UiUser) -> None:
    conn.execute(insert(u).values(name=user.name, role=user.role,
                                  password_hash=user.password_hash, created_at=user.created_at,
                                  updated_at=user.updated_at, disabled_at=user.disabled_at))


def find_ui_user(conn: Connection, name: str) -> UiUser | None:
    row = conn.execute(select(u).where(u.c.name == name)).first()
    return _to_user(row) if row is not None else None


def list_ui_users(conn: Connection) -> tuple[UiUser, ...]:
    return tuple(_to_user(row) for row in conn.execute(select(u).order_by(u.c.name)))


def update_ui_user(conn: Connection, name: str, now: datetime, password_hash: str | None,
                   disabled: bool | None) -> bool:
    values: dict[str, Any] = {"updated_at": now}
    if password_hash is not None:
        values["password_hash"] = password_hash
    if disabled is not None:
        values["disabled_at"] = now if disabled else None
    found = bool(conn.execute(update(u).where(u.c.name == name).values(**values)).rowcount)
    if password_hash is not None or disabled:
        end_ui_sessions(conn, None, name)
    return found


def start_ui_session(conn: Connection, id_hash: str, user: str, now: datetime,
                     expires_at: datetime) -> None:
    conn.execute(delete(s).where(s.c.expires_at <= now))
    conn.execute(insert(s).values(id_hash=id_hash, user_name=user, created_at=now,
                                  expires_at=expires_at))


def find_ui_session(conn: Connection, id_hash: str, now: datetime) -> UiUser | None:
    row = conn.execute(select(u).join(s, s.c.user_name == u.c.name)
                       .where(s.c.id_hash == id_hash, s.c.expires_at > now)).first()
    return _to_user(row) if row is not None else None


def end_ui_sessions(conn: Connection, id_hash: str | None, user: str | None) -> int:
    if id_hash is None and user is None:
        return 0
    query = delete(s)
    if id_hash is not None:
        query = query.where(s.c.id_hash == id_hash)
    if user is not None:
        query = query.where(s.c.user_name == user)
    return int(conn.execute(query).rowcount)


def activity(conn: Connection, since: datetime,
             types: Sequence[str]) -> dict[tuple[datetime, str], int]:
    if conn.dialect.name == "postgresql":
        minute: Any = func.date_trunc("minute", events.c.at)
    else:  # fixed-width UTC text: the first 16 characters are the minute
        minute = func.substr(events.c.at, 1, 16)
    query = (select(minute, events.c.type, func.count())
             .where(events.c.at >= since, events.c.type.in_(list(types)))
             .group_by(minute, events.c.type))
    return {(_minute(at), type): int(count) for at, type, count in conn.execute(query)}


def _minute(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(second=0, microsecond=0)
    return datetime.fromisoformat(str(value).replace(" ", "T")).replace(tzinfo=UTC)


class SqlUiUsers:
    """The UI user verbs over one runner."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def create_ui_user(self, user: UiUser) -> None:
        try:
            await self._run.write(create_ui_user, user)
        except Conflict:
            raise Conflict(f"a UI user named '{user.name}' already exists",
                           hint="pick another name, or change its password with `outbox users "
                                "set-password`") from None

    async def find_ui_user(self, name: str) -> UiUser | None:
        return await self._run.read(find_ui_user, name)

    async def list_ui_users(self) -> tuple[UiUser, ...]:
        return await self._run.read(list_ui_users)

    async def update_ui_user(self, name: str, now: datetime, *, password_hash: str | None = None,
                             disabled: bool | None = None) -> bool:
        return await self._run.write(update_ui_user, name, now, password_hash, disabled)

    async def start_ui_session(self, id_hash: str, user: str, now: datetime,
                               expires_at: datetime) -> None:
        await self._run.write(start_ui_session, id_hash, user, now, expires_at)

    async def find_ui_session(self, id_hash: str, now: datetime) -> UiUser | None:
        return await self._run.read(find_ui_session, id_hash, now)

    async def end_ui_sessions(self, *, id_hash: str | None = None,
                              user: str | None = None) -> int:
        return await self._run.write(end_ui_sessions, id_hash, user)

    async def activity(self, since: datetime,
                       types: Sequence[str]) -> dict[tuple[datetime, str], int]:
        return await self._run.read(activity, since, types)
