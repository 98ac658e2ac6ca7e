"""A web UI session is a row: it ends when signed out, when its user gets a new password
or is disabled, when its user is removed, and when it expires; ending one leaves the
user's other sessions (both backends)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, delete

from outbox.store.base import Store, UiUser
from outbox.store.tables_ui import ui_sessions, ui_users
from tests.contract.support import T0, at

HOUR = timedelta(hours=1)


async def two_users(store: Store) -> None:
    for name in ("ann", "bob"):
        await store.ui_users.create_ui_user(UiUser(name, "sender", "hash", T0, T0))


async def test_a_session_lasts_until_it_ends_or_expires(store: Store) -> None:
    await two_users(store)
    await store.ui_users.start_ui_session("s1", "ann", T0, T0 + HOUR)
    await store.ui_users.start_ui_session("s2", "ann", T0, T0 + HOUR)
    found = await store.ui_users.find_ui_session("s1", at(60))
    assert found is not None and found.name == "ann"
    assert await store.ui_users.find_ui_session("s1", T0 + HOUR) is None  # expired
    assert await store.ui_users.find_ui_session("unknown", at(60)) is None

    assert await store.ui_users.end_ui_sessions(id_hash="s1") == 1
    assert await store.ui_users.find_ui_session("s1", at(60)) is None
    assert await store.ui_users.find_ui_session("s2", at(60)) is not None  # the other one


async def test_a_new_password_or_disabling_ends_every_session_of_the_user(
        store: Store) -> None:
    await two_users(store)
    for id, user in (("a1", "ann"), ("a2", "ann"), ("b1", "bob")):
        await store.ui_users.start_ui_session(id, user, T0, T0 + HOUR)
    assert await store.ui_users.update_ui_user("ann", at(1), password_hash="new")
    assert await store.ui_users.find_ui_session("a1", at(2)) is None
    assert await store.ui_users.find_ui_session("a2", at(2)) is None
    assert await store.ui_users.find_ui_session("b1", at(2)) is not None

    await store.ui_users.start_ui_session("a3", "ann", at(3), at(3) + HOUR)
    assert await store.ui_users.update_ui_user("ann", at(4), disabled=True)
    assert await store.ui_users.update_ui_user("ann", at(5), disabled=False)
    assert await store.ui_users.find_ui_session("a3", at(6)) is None  # enabling revives none
    assert await store.ui_users.end_ui_sessions(user="bob") == 1


async def test_a_removed_user_has_no_session(store: Store) -> None:
    await two_users(store)
    await store.ui_users.start_ui_session("a1", "ann", T0, T0 + HOUR)

    def remove(conn: Connection) -> None:
        conn.execute(delete(ui_users).where(ui_users.c.name == "ann"))

    await store._run.write(remove)  # type: ignore[attr-defined]
    assert await store.ui_users.find_ui_session("a1", at(1)) is None


async def test_starting_a_session_forgets_expired_ones(store: Store) -> None:
    await two_users(store)
    await store.ui_users.start_ui_session("old", "ann", T0, T0 + HOUR)
    await store.ui_users.start_ui_session("new", "bob", T0 + 2 * HOUR, T0 + 3 * HOUR)

    def ids(conn: Connection) -> set[str]:
        return {row.id_hash for row in conn.execute(ui_sessions.select())}

    assert await store._run.read(ids) == {"new"}  # type: ignore[attr-defined]
