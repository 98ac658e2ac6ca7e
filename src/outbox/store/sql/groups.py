"""The SQL of groups, aliases, and the slice of the address book a submission needs."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy import alias as aliased

from outbox.core.contacts import (
    AddressBook,
    Alias,
    Contact,
    Group,
    Member,
    MemberKind,
    name_key,
)
from outbox.errors import NotFound, UnknownMember
from outbox.store.sql.contacts import chunks, contacts_named, get_contacts
from outbox.store.tables import address_groups, aliases, contacts, group_members

MAX_NESTING = 64  # rounds of loading nested groups; cycles stop earlier


# --- groups ---------------------------------------------------------------------------------


def save_group(conn: Connection, group: Group, now: datetime) -> Group:
    """Create or replace the group with this name (compared by name key)."""
    members = [_member_values(conn, member, f"members[{index}]")
               for index, member in enumerate(group.members)]
    key = name_key(group.name)
    id = conn.execute(select(address_groups.c.id)
                      .where(address_groups.c.name_key == key)).scalar()
    values = {"name": group.name, "name_key": key, "description": group.description,
              "updated_at": now}
    if id is None:
        id = conn.execute(insert(address_groups).values(created_at=now, **values)
                          .returning(address_groups.c.id)).scalar_one()
    else:
        conn.execute(update(address_groups).where(address_groups.c.id == id).values(values))
        conn.execute(delete(group_members).where(group_members.c.group_id == id))
    if members:
        conn.execute(insert(group_members), [{"group_id": id, "position": position, **member}
                                             for position, member in enumerate(members)])
    return get_group(conn, group.name)


def _member_values(conn: Connection, member: Member, where: str) -> dict[str, Any]:
    values: dict[str, Any] = {"contact_id": None, "member_group_id": None, "address": None}
    if member.kind is MemberKind.ADDRESS:
        values["address"] = member.value
    elif member.kind is MemberKind.CONTACT:
        found = conn.execute(select(contacts.c.id).where(
            contacts.c.id == int(member.value))).scalar()
        if found is None:
            raise UnknownMember(f"{where}: no contact with id {member.value}", field=where)
        values["contact_id"] = found
    else:
        found = conn.execute(select(address_groups.c.id).where(
            address_groups.c.name_key == name_key(member.value))).scalar()
        if found is None:
            raise UnknownMember(f"{where}: no group named {member.value!r}", field=where)
        values["member_group_id"] = found
    return values


def get_group(conn: Connection, name: str) -> Group:
    found = _groups(conn, address_groups.c.name_key == name_key(name))
    if not found:
        raise NotFound(f"no group named {name!r}")
    return found[0]


def list_groups(conn: Connection) -> list[Group]:
    return _groups(conn, None)


def delete_group(conn: Connection, name: str) -> None:
    gone = conn.execute(delete(address_groups).where(address_groups.c.name_key == name_key(name)))
    if not gone.rowcount:
        raise NotFound(f"no group named {name!r}")


def _groups(conn: Connection, where: Any) -> list[Group]:
    query = select(address_groups).order_by(address_groups.c.name_key)
    if where is not None:
        query = query.where(where)
    rows = conn.execute(query).all()
    members = _members(conn, [row.id for row in rows])
    return [Group(row.name, tuple(members.get(row.id, ())), row.description) for row in rows]


def _members(conn: Connection, group_ids: list[int]) -> dict[int, list[Member]]:
    nested = aliased(address_groups)
    found: dict[int, list[Member]] = {}
    for part in chunks(group_ids):
        query = (select(group_members, nested.c.name.label("group_name"))
                 .outerjoin(nested, nested.c.id == group_members.c.member_group_id)
                 .where(group_members.c.group_id.in_(part))
                 .order_by(group_members.c.group_id, group_members.c.position))
        for row in conn.execute(query):
            found.setdefault(row.group_id, []).append(_member(row))
    return found


def _member(row: Any) -> Member:
    if row.contact_id is not None:
        return Member.contact(row.contact_id)
    if row.member_group_id is not None:
        return Member.group(row.group_name)
    return Member.address(row.address)


# --- aliases --------------------------------------------------------------------------------


def save_alias(conn: Connection, alias: Alias, now: datetime) -> Alias:
    key = name_key(alias.name)
    created = conn.execute(select(aliases.c.created_at).where(aliases.c.name_key == key)).scalar()
    conn.execute(delete(aliases).where(aliases.c.name_key == key))
    conn.execute(insert(aliases).values(name_key=key, name=alias.name,
                                        targets=list(alias.targets),
                                        created_at=created or now, updated_at=now))
    return alias


def delete_alias(conn: Connection, name: str) -> None:
    if not conn.execute(delete(aliases).where(aliases.c.name_key == name_key(name))).rowcount:
        raise NotFound(f"no alias named {name!r}")


def list_aliases(conn: Connection, keys: Collection[str] | None = None) -> list[Alias]:
    query = select(aliases).order_by(aliases.c.name_key)
    if keys is not None:
        query = query.where(aliases.c.name_key.in_(sorted(keys)))
    return [Alias(row.name, tuple(row.targets)) for row in conn.execute(query)]


# --- what a submission refers to ------------------------------------------------------------


def address_book_for(conn: Connection, names: Collection[str]) -> AddressBook:
    """Aliases, groups (with every group nested in them) and contacts named by
    `names` (name keys), plus the contacts those groups list."""
    keys = sorted(names)
    groups = _group_closure(conn, keys)
    member_ids = [int(m.value) for g in groups for m in g.members
                  if m.kind is MemberKind.CONTACT]
    by_name: dict[str, tuple[Contact, ...]] = {}
    for contact in contacts_named(conn, keys):
        key = name_key(contact.name)
        by_name[key] = (*by_name.get(key, ()), contact)
    return AddressBook(
        aliases={name_key(a.name): a for a in list_aliases(conn, keys)},
        groups={name_key(g.name): g for g in groups},
        contacts_by_name=by_name,
        contacts_by_id={c.id: c for c in get_contacts(conn, member_ids)},
    )


def _group_closure(conn: Connection, keys: list[str]) -> list[Group]:
    loaded: dict[str, Group] = {}
    wanted = set(keys)
    for _ in range(MAX_NESTING):
        wanted -= set(loaded)
        if not wanted:
            break
        found = _groups(conn, address_groups.c.name_key.in_(sorted(wanted)))
        if not found:
            break
        for group in found:
            loaded[name_key(group.name)] = group
        wanted = {name_key(m.value) for g in found for m in g.members
                  if m.kind is MemberKind.GROUP}
    return list(loaded.values())
