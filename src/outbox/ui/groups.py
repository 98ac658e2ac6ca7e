"""Groups and aliases with their members, and the directory (LDAP) sync: its settings
(secrets masked), its last run, and "Sync now". Everyone signed in reads; senders and
admins change. Every change is an `outbox.contacts` call, as /v1/groups, /v1/aliases and
/v1/contacts/sync-ldap make."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from outbox.config.sample import mask_url_password
from outbox.core.contacts import Alias, Group, Member, MemberKind
from outbox.errors import InputError, NotFound
from outbox.service import Outbox
from outbox.ui import notices
from outbox.ui.contacts import split_list
from outbox.ui.render import page
from outbox.ui.session import Sender, Service, Session, Viewer

router = APIRouter()


def parse_member(line: str) -> Member:
    """"group:Name" a nested group, "#12" the contact with id 12, else an address."""
    if line.lower().startswith("group:"):
        return Member.group(line[6:].strip())
    if line.startswith("#") and line[1:].isdigit():
        return Member.contact(int(line[1:]))
    return Member.address(line)


def member_text(member: Member) -> str:
    if member.kind is MemberKind.GROUP:
        return f"group:{member.value}"
    return f"#{member.value}" if member.kind is MemberKind.CONTACT else member.value


async def _shown(outbox: Outbox, member: Member) -> str:
    """A member as people read it: a contact by name and address."""
    if member.kind is MemberKind.GROUP:
        return f"group {member.value}"
    if member.kind is MemberKind.ADDRESS:
        return member.value
    try:
        contact = await outbox.contacts.get_contact(int(member.value))
    except NotFound:
        return f"contact #{member.value} (deleted)"
    return f"{contact.name} <{contact.emails[0]}>" if contact.name else contact.emails[0]


@router.get("/groups", response_class=HTMLResponse)
async def groups_page(request: Request, session: Viewer, outbox: Service,
                      notice: Annotated[str, Query(max_length=500)] = "") -> HTMLResponse:
    return await _groups(request, session, outbox, notice=notice)


async def _groups(request: Request, session: Session, outbox: Outbox, *, notice: str = "",
                  error: str = "", code: int = 200,
                  typed: dict[str, str] | None = None) -> HTMLResponse:
    """`typed`: a refused form's fields, shown again in the form they came from (its
    `origin`: "new" for the add forms, else the edited group's name)."""
    groups = [(g, [await _shown(outbox, m) for m in g.members],
               "\n".join(member_text(m) for m in g.members))
              for g in await outbox.contacts.list_groups()]
    return page(request, "groups.html", session, code=code, groups=groups,
                aliases=await outbox.contacts.list_aliases(), notice=notice, error=error,
                typed=typed or {})


def _done(notice: str, session: Session) -> Response:
    return notices.redirect("/ui/groups", notice, session)


@router.post("/groups", response_class=HTMLResponse)
async def save_group(request: Request, session: Sender, outbox: Service,
                     name: Annotated[str, Form(max_length=200)],
                     members: Annotated[str, Form(max_length=200_000)] = "",
                     description: Annotated[str, Form(max_length=1000)] = "",
                     origin: Annotated[str, Form(max_length=200)] = "") -> Response:
    try:
        group = Group(name, tuple(parse_member(m) for m in members.splitlines() if m.strip()),
                      description)
        saved = await outbox.contacts.save_group(group)
    except InputError as exc:
        typed = {"form": "group", "origin": origin or name, "name": name,
                 "members": members, "description": description}
        return await _groups(request, session, outbox, error=f"Group {name}: "
                             f"{exc.message}", code=422, typed=typed)
    return _done(f"Group {saved.name} saved with {len(saved.members)} member(s).", session)


@router.post("/aliases", response_class=HTMLResponse)
async def save_alias(request: Request, session: Sender, outbox: Service,
                     name: Annotated[str, Form(max_length=200)],
                     targets: Annotated[str, Form(max_length=200_000)] = "") -> Response:
    try:
        saved = await outbox.contacts.save_alias(Alias(name, tuple(split_list(targets))))
    except InputError as exc:
        typed = {"form": "alias", "origin": "new", "name": name, "targets": targets}
        return await _groups(request, session, outbox, error=f"Alias {name}: "
                             f"{exc.message}", code=422, typed=typed)
    return _done(f"Alias {saved.name} saved with {len(saved.targets)} address(es).", session)


# The name travels in the form, not the path: a name may hold "/" (check_name allows it),
# which no path parameter matches, so such a group could be made here but never deleted.
@router.post("/groups/delete")
async def delete_group(session: Sender, outbox: Service,
                       name: Annotated[str, Form(max_length=200)]) -> Response:
    await outbox.contacts.delete_group(name)
    return _done(f"Group {name} deleted.", session)


@router.post("/aliases/delete")
async def delete_alias(session: Sender, outbox: Service,
                       name: Annotated[str, Form(max_length=200)]) -> Response:
    await outbox.contacts.delete_alias(name)
    return _done(f"Alias {name} deleted.", session)


@router.get("/directory", response_class=HTMLResponse)
async def directory_page(request: Request, session: Viewer, outbox: Service) -> HTMLResponse:
    ldap = outbox.contacts.ldap
    return page(request, "directory.html", session, configured=bool(ldap.url),
                url=mask_url_password(ldap.url), base_dn=ldap.base_dn,
                interval=ldap.sync_interval, state=await outbox.contacts.sync_state())


@router.post("/directory/sync", response_class=HTMLResponse)
async def sync_now(request: Request, session: Sender, outbox: Service,
                   full: Annotated[str, Form()] = "") -> HTMLResponse:
    result = await outbox.contacts.sync_ldap(full == "yes")
    return page(request, "book_report.html", session, report=result.report, applied=True,
                what=f"Directory sync ({'full' if result.full else 'changes only'})",
                confirm=False)
