"""Read people from an LDAP directory (ldap3): the only module that talks LDAP.

A full read returns every entry matching `[ldap] filter` under `base_dn`. An
incremental read returns the entries whose change attribute (modifyTimestamp)
is at or after the cursor, plus the ids of every entry still there, which is
how deletions are seen: an entry whose id is no longer listed was deleted
upstream (or no longer matches the filter). Re-reading the cursor's own second
is harmless: an unchanged entry is left as it is.

ldap3 is synchronous; a read runs in a worker thread. Its exceptions become
`DirectoryError` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from outbox.config import LdapSettings
from outbox.core.contacts import NewContact, Source
from outbox.errors import ConfigError, DirectoryError

PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class DirectoryRead:
    entries: list[NewContact]  # all entries, or those changed since the cursor
    present: set[str] | None  # ids of every entry still there (incremental reads only)
    cursor: str  # the latest change time seen; "" when none


class LdapDirectory:
    def __init__(self, settings: LdapSettings) -> None:
        if not settings.url:
            raise ConfigError("[ldap] url is not set, so there is no directory to sync from",
                              hint="set [ldap] url and base_dn in the config")
        self.settings = settings
        self.attrs = settings.attributes

    async def read(self, since: str | None) -> DirectoryRead:
        """Everything (`since` None), or what changed at or after `since`."""
        return await asyncio.to_thread(self._read, since)

    def _read(self, since: str | None) -> DirectoryRead:
        with self._connection() as conn:
            wanted = [a for a in (self.attrs.name, self.attrs.email, self.attrs.tags,
                                  self.attrs.id, self.attrs.changed) if a]
            raw = list(self._search(conn, self._filter(since), wanted))
            present = None
            if since is not None:
                present = {self._first(entry, self.attrs.id)
                           for entry in self._search(conn, self.settings.filter, [self.attrs.id])}
                present.discard("")
        changes = [self._first(entry, self.attrs.changed) for entry in raw]
        cursor = max([c for c in changes if c] + [since or ""])
        entries = [self._contact(entry) for entry in raw if self._first(entry, self.attrs.id)]
        return DirectoryRead(entries, present, cursor)

    def _filter(self, since: str | None) -> str:
        if since is None:
            return self.settings.filter
        return (f"(&{self.settings.filter}"
                f"({self.attrs.changed}>={escape_filter_chars(since)}))")

    @contextmanager
    def _connection(self) -> Iterator[ldap3.Connection]:
        s = self.settings
        timeout = max(1, math.ceil(s.timeout.total_seconds()))  # ldap3 packs it as an integer
        try:
            server = ldap3.Server(s.url, connect_timeout=timeout, get_info=ldap3.NONE)
            bind = ldap3.AUTO_BIND_TLS_BEFORE_BIND if s.start_tls else ldap3.AUTO_BIND_NO_TLS
            conn = ldap3.Connection(server, user=s.bind_dn or None,
                                    password=s.bind_password.get_secret_value() or None,
                                    auto_bind=bind, receive_timeout=timeout, read_only=True,
                                    raise_exceptions=True)
        except LDAPException as exc:
            raise DirectoryError(f"cannot bind to {s.url} as {s.bind_dn or 'anonymous'}: "
                                 f"{_reason(exc)}") from exc
        try:
            yield conn
        except LDAPException as exc:
            raise DirectoryError(f"searching {s.base_dn} on {s.url} failed: "
                                 f"{_reason(exc)}") from exc
        finally:
            conn.unbind()

    def _search(self, conn: ldap3.Connection, search_filter: str,
                attributes: list[str]) -> Iterator[dict[str, list[bytes]]]:
        pages = conn.extend.standard.paged_search(
            search_base=self.settings.base_dn, search_filter=search_filter,
            search_scope=ldap3.SUBTREE, attributes=attributes, paged_size=PAGE_SIZE,
            generator=True)
        for item in pages:
            if item.get("type") == "searchResEntry":
                yield {k.lower(): list(v) for k, v in item.get("raw_attributes", {}).items()}

    def _contact(self, entry: dict[str, list[bytes]]) -> NewContact:
        tags = _texts(entry, self.attrs.tags) if self.attrs.tags else []
        return NewContact(name=self._first(entry, self.attrs.name),
                          emails=tuple(_texts(entry, self.attrs.email)), tags=tuple(tags),
                          source=Source.LDAP, external_id=self._first(entry, self.attrs.id))

    @staticmethod
    def _first(entry: dict[str, list[bytes]], attribute: str) -> str:
        values = _texts(entry, attribute)
        return values[0] if values else ""


def _texts(entry: dict[str, list[bytes]], attribute: str) -> list[str]:
    return [_text(v) for v in entry.get(attribute.lower(), [])]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    return str(value).strip()


def _reason(exc: LDAPException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
