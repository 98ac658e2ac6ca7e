"""The address book's contacts: search (the autocomplete's index), add, edit, merge of
duplicates (a preview, then a confirmation), CSV / vCard import with its report (added,
merged, skipped with the reason). Everyone signed in reads; senders and admins change.
Every change is a `outbox.contacts` call, the same as /v1/contacts and `outbox contacts`."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from outbox.core.contacts import Contact
from outbox.errors import InputError
from outbox.service import Outbox
from outbox.ui import notices
from outbox.ui.render import page
from outbox.ui.session import Sender, Service, Session, Viewer

router = APIRouter()
PAGE_SIZE = 50
MAX_SEARCH = 50  # matching addresses a search shows: the most the store's suggest gives
MAX_IMPORT = 10 * 1024 * 1024  # bytes of one CSV or vCard file


def split_list(text: str) -> list[str]:
    """Addresses or tags typed one a line or separated by commas."""
    return [part.strip() for part in re.split(r"[\n,;]+", text) if part.strip()]


async def _found(outbox: Outbox, q: str, after: int) -> tuple[list[Contact], int | None, bool]:
    """The contacts a search finds (by name or address prefix), else a page of all; and
    whether a search stopped at its limit."""
    if q.strip():
        # The autocomplete's index: best first, at most MAX_SEARCH addresses, no next page.
        found = await outbox.contacts.suggest(q.strip(), MAX_SEARCH)
        ids = dict.fromkeys(s.contact_id for s in found)
        return [await outbox.contacts.get_contact(id) for id in ids], None, len(found) >= MAX_SEARCH
    contacts = list(await outbox.contacts.list_contacts(PAGE_SIZE + 1, after))
    more = len(contacts) > PAGE_SIZE
    contacts = contacts[:PAGE_SIZE]
    return contacts, (contacts[-1].id if more and contacts else None), False


@router.get("/contacts", response_class=HTMLResponse)
async def contacts_page(request: Request, session: Viewer, outbox: Service,
                        q: Annotated[str, Query(max_length=200)] = "",
                        after: Annotated[int, Query(ge=0)] = 0,
                        notice: Annotated[str, Query(max_length=500)] = "") -> HTMLResponse:
    contacts, next_after, capped = await _found(outbox, q, after)
    return page(request, "contacts.html", session, contacts=contacts, q=q,
                next_after=next_after, notice=notice, capped=MAX_SEARCH if capped else 0)


async def _contact_form(request: Request, session: Session, contact: Contact | None,
                        error: str = "", code: int = 200, **typed: str) -> HTMLResponse:
    form = {"name": contact.name if contact else "",
            "emails": "\n".join(contact.emails) if contact else "",
            "tags": ", ".join(contact.tags) if contact else "", **typed}
    return page(request, "contact.html", session, code=code, contact=contact, form=form,
                error=error)


@router.get("/contacts/new", response_class=HTMLResponse)
async def new_contact(request: Request, session: Sender) -> HTMLResponse:
    return await _contact_form(request, session, None)


@router.get("/contacts/{id}", response_class=HTMLResponse)
async def show_contact(request: Request, id: int, session: Viewer,
                       outbox: Service) -> HTMLResponse:
    return await _contact_form(request, session, await outbox.contacts.get_contact(id))


@router.post("/contacts/save", response_class=HTMLResponse)
async def save_contact(request: Request, session: Sender, outbox: Service,
                       name: Annotated[str, Form(max_length=200)] = "",
                       emails: Annotated[str, Form(max_length=20_000)] = "",
                       tags: Annotated[str, Form(max_length=5_000)] = "",
                       id: Annotated[int, Form(ge=0)] = 0) -> Response:
    book = outbox.contacts
    try:
        saved = (await book.replace_contact(id, name, split_list(emails), split_list(tags))
                 if id else await book.add_contact(name, split_list(emails), split_list(tags)))
    except InputError as exc:
        contact = await book.get_contact(id) if id else None
        return await _contact_form(request, session, contact, exc.message, 422, name=name,
                                   emails=emails, tags=tags)
    notice = f"Contact {saved.name or saved.emails[0]} saved."
    return notices.redirect("/ui/contacts", notice, session)


@router.post("/contacts/dedupe", response_class=HTMLResponse)
async def dedupe(request: Request, session: Sender, outbox: Service,
                 apply: Annotated[str, Form()] = "") -> HTMLResponse:
    """Without `apply`: what a merge would do, with a button to do it; with it: done."""
    report = await outbox.contacts.dedupe(apply == "yes")
    return page(request, "book_report.html", session, report=report, what="Merge duplicates",
                applied=apply == "yes", confirm=apply != "yes" and report.merged > 0)


@router.post("/contacts/import", response_class=HTMLResponse)
async def import_contacts(request: Request, session: Sender, outbox: Service,
                          file: Annotated[UploadFile, File()]) -> HTMLResponse:
    data = await file.read(MAX_IMPORT + 1)
    if len(data) > MAX_IMPORT:
        raise InputError(f"file: over the import limit of {MAX_IMPORT:,} bytes",
                         field="file", hint="split the file and import the parts")
    report = await outbox.contacts.import_file(data, file.filename or "")
    return page(request, "book_report.html", session, report=report,
                what=f"Import of {file.filename}", applied=True, confirm=False, numbered=True)
