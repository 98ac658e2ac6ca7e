"""The address book over HTTP: contacts, groups, aliases, import, dedupe, directory
sync, autocomplete (`GET /v1/contacts/suggest?q=`) and route explanations.

Reading needs the `read` scope; changing the book needs `contacts` (or `admin`).
Every route is a thin call into `addressbook.ContactBook`.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from outbox.api.auth import Principal, require
from outbox.api.described import ADDRESS, CSV_FILE, NAME, VCARD_FILE
from outbox.api.media import media_type
from outbox.api.multipart import FILE_FIELD, FORM_TYPE, FormFile, is_form
from outbox.api.schemas import JSON_INTEGER, Address, Strict
from outbox.core import addresses
from outbox.core.contact_merge import Report
from outbox.core.contacts import Alias, Contact, Group, Member, MemberKind, Suggestion
from outbox.core.routing import explain_route
from outbox.errors import UnsupportedMediaType
from outbox.service import Outbox
from outbox.service.contacts import ContactBook
from outbox.views.render import iso

router = APIRouter(prefix="/v1", tags=["address book"])
Reader = Annotated[Principal, Depends(require("read"))]
Editor = Annotated[Principal, Depends(require("contacts"))]


async def _book(request: Request) -> ContactBook:
    outbox: Outbox = request.app.state.outbox
    return outbox.contacts


Book = Annotated[ContactBook, Depends(_book)]
# Contact ids are 64-bit database ids: a larger number is a 422, never a database error.
MAX_ID = 2**63 - 1
ContactId = Annotated[int, Path(ge=1, le=MAX_ID)]
MAX_JSON_ID = 2**53 - 1
# A group's or alias's name (core.contacts.check_name).
BookName = Annotated[str, Path(json_schema_extra=NAME)]


# --- bodies ---------------------------------------------------------------------------------


class ContactIn(Strict):
    name: str = Field("", max_length=200)
    emails: list[Address] = Field(min_length=1, max_length=50, json_schema_extra={
        "uniqueItems": True}, description="the first is the one a group or a typed name "
        "sends to; each address once")
    tags: list[str] = Field(default_factory=list, max_length=50)


class ContactOut(BaseModel):
    id: int
    name: str
    emails: list[str]
    tags: list[str]
    source: str = Field(description="local, csv, vcard or ldap (owned by the directory)")
    updated_at: str | None


class ContactList(BaseModel):
    contacts: list[ContactOut]
    next_after: int | None = Field(description="pass as ?after= for the next page")


class SuggestionOut(BaseModel):
    contact_id: int
    name: str
    address: str
    formatted: str = Field(description="ready for a To field: Name <address>")
    use_count: int
    last_used_at: str | None


class SuggestionList(BaseModel):
    suggestions: list[SuggestionOut]


class MemberModel(Strict):
    """Exactly one of: a contact id, a group name, an address."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": [name], "properties": {
            other: {"type": "null"} if other != name else {"not": {"type": "null"}}
            for other in ("contact", "group", "address")}}
        for name in ("contact", "group", "address")]})

    # JSON numbers past 2**53 lose precision in most clients (and in float comparisons):
    # a member's contact id stays below, as every id the database gives out does.
    contact: Annotated[int, Field(ge=1, le=MAX_JSON_ID), JSON_INTEGER] | None = None
    group: str | None = Field(None, json_schema_extra=NAME)
    address: str | None = Field(None, json_schema_extra=ADDRESS)

    @model_validator(mode="after")
    def _one(self) -> MemberModel:
        if sum(v is not None for v in (self.contact, self.group, self.address)) != 1:
            raise ValueError("give exactly one of contact, group or address")
        return self

    def to_member(self) -> Member:
        if self.contact is not None:
            return Member.contact(self.contact)
        return Member.group(self.group) if self.group is not None else Member.address(
            self.address or "")


class GroupIn(Strict):
    members: list[MemberModel] = Field(default_factory=list, max_length=10_000)
    description: str = Field("", max_length=1000)


class GroupOut(BaseModel):
    name: str
    description: str
    members: list[MemberModel]


class AliasIn(Strict):
    targets: list[Address] = Field(min_length=1, max_length=1000)


class AliasOut(BaseModel):
    name: str
    targets: list[str]


class ReportOut(BaseModel):
    applied: bool
    read: int
    added: int
    updated: int
    unchanged: int
    merged: int
    removed: int
    skipped: int
    summary: str
    notes: list[str]


class RouteOut(BaseModel):
    address: str
    relay: str | None
    reason: str
    checked: list[str]
    internal_rule: str | None
    held: bool
    violation: str | None


def contact_out(c: Contact) -> ContactOut:
    return ContactOut(id=c.id, name=c.name, emails=list(c.emails), tags=list(c.tags),
                      source=c.source.value, updated_at=iso(c.updated_at))


def group_out(g: Group) -> GroupOut:
    members = [MemberModel(contact=int(m.value)) if m.kind is MemberKind.CONTACT
               else MemberModel(group=m.value) if m.kind is MemberKind.GROUP
               else MemberModel(address=m.value) for m in g.members]
    return GroupOut(name=g.name, description=g.description, members=members)


def report_out(report: Report, applied: bool) -> ReportOut:
    return ReportOut(applied=applied, read=report.read, added=report.added,
                     updated=report.updated, unchanged=report.unchanged, merged=report.merged,
                     removed=report.removed, skipped=report.skipped,
                     summary=report.summary(), notes=list(report.notes))


def suggestion_out(s: Suggestion) -> SuggestionOut:
    return SuggestionOut(contact_id=s.contact_id, name=s.name, address=s.address,
                         formatted=s.formatted(), use_count=s.use_count,
                         last_used_at=iso(s.last_used_at))


# --- contacts -------------------------------------------------------------------------------


@router.get("/contacts/suggest", response_model=SuggestionList)
async def suggest(book: Book, _: Reader,
                  q: Annotated[str, Query(max_length=200, description="what was typed")] = "",
                  limit: Annotated[int, Query(ge=1, le=50)] = 10) -> SuggestionList:
    """Contacts whose name, a word of it, or address starts with `q`; the addresses
    used most often and most recently first."""
    return SuggestionList(suggestions=[suggestion_out(s) for s in await book.suggest(q, limit)])


@router.get("/contacts", response_model=ContactList)
async def list_contacts(book: Book, _: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                        after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> ContactList:
    found = await book.list_contacts(limit, after)
    return ContactList(contacts=[contact_out(c) for c in found],
                       next_after=found[-1].id if len(found) == limit else None)


@router.post("/contacts", status_code=201, response_model=ContactOut)
async def add_contact(body: ContactIn, book: Book, _: Editor) -> ContactOut:
    return contact_out(await book.add_contact(body.name, body.emails, body.tags))


@router.post("/contacts/import", response_model=ReportOut, openapi_extra={"requestBody": {
    "required": True, "content": {
        "text/csv": {"schema": {"type": "string", "pattern": CSV_FILE}},
        "text/vcard": {"schema": {"type": "string", "pattern": VCARD_FILE}},
        FORM_TYPE: {"schema": {"type": "object", "required": [FILE_FIELD], "properties": {
            FILE_FIELD: {"type": "string", "pattern": CSV_FILE, "description": "the file: "
                         "CSV, or vCard when its filename ends in .vcf or .vcard"}}},
                    "encoding": {FILE_FIELD: {"contentType": "text/csv"}}}}}})
async def import_contacts(request: Request, book: Book, _: Editor,
                          format: Annotated[str | None, Query(pattern="^(csv|vcard)$")] = None,
                          dry_run: bool = False) -> ReportOut:
    """The body is a CSV file (its header names an email column, like 'email' or
    'E-mail Address') or vCards, sent raw (Content-Type text/csv or text/vcard; without
    a Content-Type, ?format= or what the content looks like decides) or as the form
    field `file` of a multipart/form-data body (`curl -F file=@contacts.vcf`: its
    filename decides, .vcf or .vcard being vCard, else the part's Content-Type, ?format=,
    the content). Any other Content-Type is 415. The report says what was added, merged
    into existing contacts (same address), unchanged or skipped, and why."""
    content_type = request.headers.get("content-type")
    if content_type and is_form(content_type):
        form = FormFile.of(content_type)
        data = b"".join([chunk async for chunk in form.chunks(request.stream())])
        filename = form.filename or ""
        kind = (_format_of_name(filename) or _format_of(form.content_type or "")
                or format)
    else:
        filename, kind = "", _raw_format(content_type) or format
        data = await request.body()
    report = await book.import_file(data, filename, format=kind, apply=not dry_run)
    return report_out(report, applied=not dry_run)


_FORMATS = {"text/csv": "csv", "text/vcard": "vcard", "text/x-vcard": "vcard"}
_SUFFIXES = {".csv": "csv", ".vcf": "vcard", ".vcard": "vcard"}


def _format_of(content_type: str) -> str | None:
    return _FORMATS.get(media_type(content_type))


def _format_of_name(filename: str) -> str | None:
    return _SUFFIXES.get(PurePosixPath(filename.replace("\\", "/")).suffix.lower())


def _raw_format(content_type: str | None) -> str | None:
    """The format a raw body's Content-Type names; None without one. Any other type
    is refused: a form sent as the file would be read as a CSV without an email column."""
    if not content_type:
        return None
    kind = _format_of(content_type)
    if kind is None:
        raise UnsupportedMediaType(
            "this route takes a CSV or vCard file as text/csv, text/vcard or the field "
            f"'{FILE_FIELD}' of {FORM_TYPE} (curl -F {FILE_FIELD}=@contacts.csv), not "
            f"'{content_type[:100]}'", field="Content-Type",
            hint=f"curl -F {FILE_FIELD}=@contacts.csv, or curl -H 'Content-Type: text/csv' "
                 "--data-binary @contacts.csv")
    return kind


@router.post("/contacts/dedupe", response_model=ReportOut)
async def dedupe_contacts(book: Book, _: Editor, apply: bool = False) -> ReportOut:
    """Contacts sharing an address; merged only with ?apply=true."""
    return report_out(await book.dedupe(apply), applied=apply)


@router.post("/contacts/sync-ldap", response_model=ReportOut)
async def sync_ldap(book: Book, _: Editor, full: bool = False) -> ReportOut:
    return report_out((await book.sync_ldap(full)).report, applied=True)


@router.get("/contacts/{id}", response_model=ContactOut)
async def get_contact(id: ContactId, book: Book, _: Reader) -> ContactOut:
    return contact_out(await book.get_contact(id))


@router.put("/contacts/{id}", response_model=ContactOut)
async def replace_contact(id: ContactId, body: ContactIn, book: Book, _: Editor) -> ContactOut:
    return contact_out(await book.replace_contact(id, body.name, body.emails, body.tags))


@router.delete("/contacts/{id}", status_code=204, response_class=Response)
async def delete_contact(id: ContactId, book: Book, _: Editor) -> Response:
    await book.delete_contact(id)
    return Response(status_code=204)


# --- groups and aliases ---------------------------------------------------------------------


@router.get("/groups", response_model=list[GroupOut])
async def list_groups(book: Book, _: Reader) -> list[GroupOut]:
    return [group_out(g) for g in await book.list_groups()]


@router.put("/groups/{name:path}", response_model=GroupOut)
async def save_group(name: BookName, body: GroupIn, book: Book, _: Editor) -> GroupOut:
    """Create or replace a group; members are contacts, addresses and other groups."""
    group = Group(name, tuple(m.to_member() for m in body.members), body.description)
    return group_out(await book.save_group(group))


@router.delete("/groups/{name:path}", status_code=204, response_class=Response)
async def delete_group(name: BookName, book: Book, _: Editor) -> Response:
    await book.delete_group(name)
    return Response(status_code=204)


@router.get("/aliases", response_model=list[AliasOut])
async def list_aliases(book: Book, _: Reader) -> list[AliasOut]:
    return [AliasOut(name=a.name, targets=list(a.targets)) for a in await book.list_aliases()]


@router.put("/aliases/{name:path}", response_model=AliasOut)
async def save_alias(name: BookName, body: AliasIn, book: Book, _: Editor) -> AliasOut:
    alias = await book.save_alias(Alias(name, tuple(body.targets)))
    return AliasOut(name=alias.name, targets=list(alias.targets))


@router.delete("/aliases/{name:path}", status_code=204, response_class=Response)
async def delete_alias(name: BookName, book: Book, _: Editor) -> Response:
    await book.delete_alias(name)
    return Response(status_code=204)


# --- routing --------------------------------------------------------------------------------


@router.get("/routes/explain", response_model=RouteOut)
async def explain(request: Request, _: Reader,
                  address: Annotated[str, Query(json_schema_extra=ADDRESS)],
                  relay: str | None = None) -> RouteOut:
    """Which relay would carry `address`, which rule decided it, and whether the
    internal-domains policy would hold it."""
    outbox: Outbox = request.app.state.outbox
    parsed = addresses.parse_mailbox(address, "address")
    found = explain_route(parsed.addr_spec, outbox.routing, outbox.policy, relay)
    return RouteOut(address=parsed.addr_spec, relay=found.relay, reason=found.reason,
                    checked=list(found.checked), internal_rule=found.internal_rule,
                    held=found.violation is not None,
                    violation=found.violation.describe() if found.violation else None)
