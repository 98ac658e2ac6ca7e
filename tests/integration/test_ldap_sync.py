"""Directory sync against a real OpenLDAP slapd on loopback: a full sync, then
incremental syncs that add, update and remove contacts; group memberships follow
the contact across updates; a bad bind changes nothing; the CLI command works."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from tests.created import create_database
from tests.processes import write_config
from tests.slapd import ADMIN_DN, ADMIN_PASSWORD, PEOPLE, Slapd, person
from typer.testing import CliRunner

from outbox.cli import common
from outbox.cli.app import app
from outbox.config import LdapAttributes, LdapSettings
from outbox.core.contacts import Contact, Group, Member, Source
from outbox.errors import DirectoryError
from outbox.service.contacts import ContactBook
from outbox.store.base import Store
from outbox.store.factory import open_store


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    server = Slapd(tmp_path / "slapd").start()
    try:
        yield server
    finally:
        server.stop()


def ldap_settings(slapd: Slapd, password: str = ADMIN_PASSWORD) -> LdapSettings:
    return LdapSettings(url=slapd.url, bind_dn=ADMIN_DN, bind_password=SecretStr(password),
                        base_dn=PEOPLE, attributes=LdapAttributes(tags="departmentNumber"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path}/outbox.db")
    await opened.migrate()
    yield opened
    await opened.close()


def by_name(contacts: Iterable[Contact]) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    return {c.name: (c.emails, c.tags) for c in contacts}


async def test_full_then_incremental_sync_adds_updates_and_removes(
        slapd: Slapd, store: Store) -> None:
    slapd.add(person("ann", "Ann Lee", "ann@corp.test", "a.lee@corp.test", department="ops"),
              person("bob", "Bob Stone", "bob@corp.test"),
              person("eve", "Eve Bad", "eve@@corp.test"))
    book = ContactBook(store.contacts, ldap_settings(slapd))

    first = await book.sync_ldap()
    assert first.full and first.cursor
    assert (first.report.added, first.report.skipped, first.report.removed) == (2, 1, 0)
    assert any("eve@@corp.test" in note for note in first.report.notes)
    contacts = await store.contacts.list_contacts(source=Source.LDAP)
    assert by_name(contacts) == {"Ann Lee": (("ann@corp.test", "a.lee@corp.test"), ("ops",)),
                                 "Bob Stone": (("bob@corp.test",), ())}
    assert all(c.external_id for c in contacts)
    bob_id = next(c.id for c in contacts if c.name == "Bob Stone")
    await store.contacts.save_group(Group("Team", (Member.contact(bob_id),)), datetime.now(UTC))

    slapd.replace(f"uid=bob,{PEOPLE}", cn="Robert Stone", mail=["rob@corp.test", "bob@corp.test"])
    slapd.delete(f"uid=ann,{PEOPLE}")
    slapd.add(person("dee", "Dee Park", "dee@corp.test", department="sales"))

    second = await book.sync_ldap()
    assert not second.full
    assert (second.report.added, second.report.updated, second.report.removed) == (1, 1, 1)
    contacts = await store.contacts.list_contacts(source=Source.LDAP)
    assert by_name(contacts) == {"Robert Stone": (("rob@corp.test", "bob@corp.test"), ()),
                                 "Dee Park": (("dee@corp.test",), ("sales",))}
    assert next(c.id for c in contacts if c.name == "Robert Stone") == bob_id
    assert (await store.contacts.get_group("Team")).members == (Member.contact(bob_id),)

    quiet = await book.sync_ldap()
    assert (quiet.report.added, quiet.report.updated, quiet.report.removed) == (0, 0, 0)
    full = await book.sync_ldap(full=True)
    assert full.full
    assert (full.report.added, full.report.updated, full.report.removed,
            full.report.unchanged) == (0, 0, 0, 2)


async def test_a_failed_bind_is_a_directory_error_and_changes_nothing(
        slapd: Slapd, store: Store) -> None:
    slapd.add(person("ann", "Ann Lee", "ann@corp.test"))
    book = ContactBook(store.contacts, ldap_settings(slapd, password="wrong"))
    with pytest.raises(DirectoryError) as caught:
        await book.sync_ldap()
    assert "cannot bind" in caught.value.message and "wrong" not in caught.value.message
    assert await store.contacts.list_contacts() == []
    assert await store.contacts.get_sync_state("ldap") is None


def test_cli_sync_ldap_reports_what_it_did(slapd: Slapd, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "configure_logging", lambda *_: None)  # keep this process's logging
    slapd.add(person("ann", "Ann Lee", "ann@corp.test"), person("bob", "Bob Stone",
                                                                 "bob@corp.test"))
    config = write_config(tmp_path / "outbox.toml", {
        "database": {"url": f"sqlite:///{tmp_path}/cli.db"},
        "logging": {"level": "warning", "file": str(tmp_path / "outbox.log")},
        "ldap": {"url": slapd.url, "bind_dn": ADMIN_DN, "bind_password": ADMIN_PASSWORD,
                 "base_dn": PEOPLE},
    })
    create_database(config)  # as serve would: no other command creates it
    run = CliRunner().invoke(app, ["contacts", "sync-ldap", "--config", str(config)])
    assert run.exit_code == 0, run.output
    assert "full sync; cursor " in run.stdout
    assert "2 added" in run.stdout


async def test_serve_s_periodic_sync_picks_up_new_entries(slapd: Slapd, store: Store) -> None:
    slapd.add(person("ann", "Ann Lee", "ann@corp.test"))
    settings = ldap_settings(slapd).model_copy(update={"sync_interval": timedelta(seconds=0.1)})
    book = ContactBook(store.contacts, settings)
    task = asyncio.create_task(book.sync_periodically())
    try:
        await until(store, {"Ann Lee"})
        slapd.add(person("bob", "Bob Stone", "bob@corp.test"))
        await until(store, {"Ann Lee", "Bob Stone"})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    unconfigured = ContactBook(store.contacts, LdapSettings())
    await asyncio.wait_for(unconfigured.sync_periodically(), timeout=5)  # returns at once


async def until(store: Store, names: set[str], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while {c.name for c in await store.contacts.list_contacts()} != names:
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {names}"
        await asyncio.sleep(0.05)
