"""Compose: To/Cc/Bcc as chips (each checked as typed, names of groups, aliases and
contacts resolved to their members and shown "via group X"), autocomplete over the
address book, attachments streamed to /ui/uploads with a progress bar, and a per-form
idempotency key so that a double submit queues one message. Sending returns at once
with the queued message: the UI never waits on SMTP."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from outbox.core.addresses import parse_mailbox, split_entries
from outbox.core.attachments import AttachmentIn
from outbox.core.compose import Submission
from outbox.core.expand import is_name
from outbox.errors import (
    AttachmentBlocked,
    IdempotencyInProgress,
    InputError,
    OutboxError,
    TooBusy,
)
from outbox.service import Outbox, Submitted, request_hash
from outbox.service.rules import external_addresses
from outbox.ui import notices
from outbox.ui.render import page
from outbox.ui.session import Sender, Service, Session

router = APIRouter()
FIELDS = ("to", "cc", "bcc")
TITLES = {"to": "To", "cc": "Cc", "bcc": "Bcc"}
REPLAY_WAIT = 10.0  # seconds a second submit of the same form waits for the first
MAX_REFUSALS = 50  # refused files a form carries back
_ATTACHMENT_FIELD = re.compile(r"attachments\[(\d+)\]")


@router.get("/compose", response_class=HTMLResponse)
async def compose_form(request: Request, session: Sender, outbox: Service) -> HTMLResponse:
    return page(request, "compose.html", session, form={}, error="",
                idempotency_key=secrets.token_urlsafe(18), limits=limits_of(outbox))


def limits_of(outbox: Outbox) -> dict[str, Any]:
    limits = outbox.settings.limits
    return {"max_attachment_size": limits.max_attachment_size,
            "blocked_extensions": ",".join(limits.blocked_extensions),
            "max_uploads_in_flight": limits.max_uploads_in_flight}


@router.get("/compose/session")
async def session_check(session: Sender) -> Response:
    """204 while the session lasts: compose.js asks before Send, so that an expired one
    keeps the draft on the page instead of losing it to the sign-in page."""
    return Response(status_code=204)


@router.get("/compose/suggest")
async def suggest(session: Sender, outbox: Service,
                  q: Annotated[str, Query(max_length=200)] = "") -> JSONResponse:
    prefix = q.strip().lower()
    if not prefix:
        return JSONResponse([])
    found: list[dict[str, str]] = []
    for group in await outbox.contacts.list_groups():
        if group.name.lower().startswith(prefix):
            found.append({"value": group.name, "label": f"{group.name} (group, "
                          f"{len(group.members)} members)", "kind": "group"})
    for alias in await outbox.contacts.list_aliases():
        if alias.name.lower().startswith(prefix):
            found.append({"value": alias.name, "label": f"{alias.name} (alias)",
                          "kind": "alias"})
    for s in await outbox.contacts.suggest(q.strip(), 10):
        found.append({"value": s.formatted(), "label": s.formatted(), "kind": "contact"})
    return JSONResponse(found[:15])


def _via(provenance: str) -> str:
    """"group:Sales" -> "via group Sales"; a chain keeps its first step."""
    first = provenance.split(" > ")[0]
    kind, _, name = first.partition(":")
    return f"via {kind} {name}" if name else ""


async def resolve(outbox: Outbox, entry: str, field: str = "to") -> dict[str, Any]:
    """One chip of the `field` box: its members (itself, for an address), how it was
    resolved, its error (naming the box: a Bcc chip's is not "to[0]")."""
    entry = entry.strip()
    try:
        if not is_name(entry):
            return {"entry": entry, "ok": True, "members": [entry], "via": "",
                    "address": await outbox.messages.check_recipient(entry),
                    "external": external_addresses(outbox.policy, _specs([entry]))}
        boxes = {name: [entry] if name == field else [] for name in FIELDS}
        expanded, expansion = await outbox.contacts.expand(Submission(
            sender="compose@outbox.invalid", to=boxes["to"], cc=boxes["cc"], bcc=boxes["bcc"]))
        value = getattr(expanded, field)
        texts = [value] if isinstance(value, str) else list(value or ())
        members = [m.strip() for t in texts for m in (split_entries(t) or [t])]
        if not members or members == [entry]:
            raise InputError(f"no contact, group or alias is named '{entry}'")
        for member in members:
            await outbox.messages.check_recipient(member)
        keys = [m for m in expansion.provenance.values() if m]
        return {"entry": entry, "ok": True, "members": members,
                "via": _via(keys[0]) if keys else "",
                "external": external_addresses(outbox.policy, _specs(members))}
    except InputError as exc:
        return {"entry": entry, "ok": False, "error": _in_box(field, exc.message),
                "members": [], "via": ""}


def _in_box(field: str, message: str) -> str:
    """"bcc[0]: ..." or "recipient: ..." (the one-entry submission's names) as "Bcc: ..."."""
    for name in (f"{field}[0]", "recipient"):
        if message.startswith(name) and message[len(name):len(name) + 1] in (":", " "):
            return TITLES[field] + message[len(name):]
    return f"{TITLES[field]}: {message}"


def _specs(entries: list[str]) -> list[str]:
    """The addr-specs of entries like "Ann <ann@example.test>"; an invalid one is left
    out (submit names it)."""
    specs = []
    for entry in entries:
        try:
            specs.append(parse_mailbox(entry, "to").addr_spec)
        except InputError:
            continue
    return specs


async def external_of(outbox: Outbox, form: dict[str, Any]) -> list[str]:
    """The form's recipients (groups and aliases expanded) outside the internal domains."""
    if not outbox.policy.domains:
        return []
    try:
        expanded, _ = await outbox.contacts.expand(_submission(form))
    except InputError:
        return []  # submit refuses it and says why
    entries = []
    for value in (expanded.to, expanded.cc, expanded.bcc):
        for text in [value] if isinstance(value, str) else list(value or ()):
            entries += [e.strip() for e in split_entries(text) or [text]]
    return external_addresses(outbox.policy, _specs(entries))


@router.get("/compose/resolve")
async def resolve_chip(session: Sender, outbox: Service,
                       entry: Annotated[str, Query(max_length=1000)],
                       field: Annotated[str, Query(pattern="^(to|cc|bcc)$")] = "to"
                       ) -> JSONResponse:
    return JSONResponse(await resolve(outbox, entry, field))


@router.post("/uploads")
async def upload(request: Request, session: Sender, outbox: Service) -> JSONResponse:
    """The raw body is one file, streamed into the blob store (never held in memory).
    Refusals are JSON `{"error": ...}` naming the rule, for the page's script."""
    limit = outbox.settings.limits.max_attachment_size
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return JSONResponse({"error": f"the file is over the limit of {limit:,} bytes "
                                      "(limits.max_attachment_size)"}, status_code=413)
    try:
        stored = await outbox.files.upload(session.owner, request.stream(), outbox.clock())
    except InputError as exc:
        return JSONResponse({"error": exc.message}, status_code=413)
    except TooBusy as exc:  # compose.js waits Retry-After and sends the file again
        cap = outbox.settings.limits.max_uploads_in_flight
        return JSONResponse({"error": f"you already have {cap} uploads under way, the most "
                                      "at once (limits.max_uploads_in_flight): add this "
                                      "file again when one has finished"},
                            status_code=429, headers={"Retry-After": str(exc.retry_after)})
    return JSONResponse({"upload_id": stored.id, "size": stored.size, "sha256": stored.sha256},
                        status_code=201)


def carried(form: dict[str, Any]) -> list[dict[str, str]]:
    """The uploads a form carries, "id|size|type|name" as compose.js writes them (a name may
    hold "|"): sent again with the form, and listed again when it comes back with an error."""
    uploads = []
    for item in form.get("attachment") or []:
        upload_id, size, content_type, filename = [*item.split("|", 3), "", "", ""][:4]
        uploads.append({"value": item, "upload_id": upload_id, "filename": filename,
                        "size": f"{int(size):,}" if size.isdigit() else "?",
                        "content_type": content_type or "application/octet-stream"})
    return uploads


def refusals(items: list[str]) -> list[dict[str, str]]:
    """The files the page refused to attach, as compose.js lists them (JSON of name, size
    and why): listed again when the form comes back, so the user still sees which files
    were left out and why (found by a stranger pass: the notices were lost)."""
    kept = []
    for item in items[:MAX_REFUSALS]:
        try:
            value = json.loads(item)
        except ValueError:
            continue
        if isinstance(value, dict):
            kept.append({k: str(value.get(k, ""))[:1000] for k in ("name", "size", "why")})
    return kept


def refused_upload(form: dict[str, Any], exc: OutboxError) -> dict[str, str] | None:
    """An upload the submission blocked (its type, by name or content): out of the form's
    attachments, and a refusal like the page's own, so a second Send goes without it."""
    found = _ATTACHMENT_FIELD.match(getattr(exc, "field", None) or "")
    if not isinstance(exc, AttachmentBlocked) or not found:
        return None
    index, items = int(found.group(1)), form["attachment"]
    if index >= len(items):
        return None
    upload = carried({"attachment": [items.pop(index)]})[0]
    return {"name": upload["filename"], "size": upload["size"], "why": exc.message}


def _submission(form: dict[str, Any]) -> Submission:
    attachments = tuple(AttachmentIn(filename=a["filename"], upload_id=a["upload_id"],
                                     content_type=a["content_type"]) for a in carried(form))
    return Submission(sender=form["sender"], to=form["to"], cc=form["cc"], bcc=form["bcc"],
                      subject=form["subject"], text=form["text"] or None,
                      html=form["html"] or None, attachments=attachments)


def form_key(key: str, body_hash: str) -> str | None:
    """The idempotency key of this content of the form: the same form sent twice queues
    one message, but a form changed after it was sent (Back, edit, Send) is a new
    message, as its user means it, not a refusal to "use a new Idempotency-Key"."""
    return f"{key}.{body_hash[:16]}" if key else None


async def _submit(outbox: Outbox, session: Session, form: dict[str, Any],
                  key: str) -> Submitted:
    body_hash = request_hash(form)
    deadline = asyncio.get_running_loop().time() + REPLAY_WAIT
    while True:
        try:
            return await outbox.messages.submit(_submission(form), owner=session.owner,
                                                idempotency_key=form_key(key, body_hash),
                                                body_hash=body_hash)
        except IdempotencyInProgress:  # the same form's first submit is still under way
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


@router.post("/compose", response_class=HTMLResponse)
async def send(request: Request, session: Sender, outbox: Service,
               sender: Annotated[str, Form()] = "", subject: Annotated[str, Form()] = "",
               text: Annotated[str, Form()] = "", html: Annotated[str, Form()] = "",
               to: Annotated[list[str] | None, Form()] = None,
               cc: Annotated[list[str] | None, Form()] = None,
               bcc: Annotated[list[str] | None, Form()] = None,
               attachment: Annotated[list[str] | None, Form()] = None,
               idempotency_key: Annotated[str, Form()] = "",
               confirm_external: Annotated[str, Form()] = "",
               refused: Annotated[list[str] | None, Form()] = None) -> Response:
    """Every field may be empty (the form is `novalidate`): the submission refuses what is
    missing, and the form comes back as typed with its reason, an empty From included."""
    form = {"sender": sender, "to": to or [], "cc": cc or [], "bcc": bcc or [],
            "subject": subject, "text": text, "html": html, "attachment": attachment or []}
    kept = refusals(refused or [])
    external = [] if confirm_external == "yes" else await external_of(outbox, form)
    if external:  # internal mail about to leave: the user confirms first
        return page(request, "compose.html", session, code=409, form=form, error="",
                    external=external, domains=outbox.policy.domains, uploads=carried(form),
                    refused=kept, idempotency_key=idempotency_key, limits=limits_of(outbox))
    try:
        submitted = await _submit(outbox, session, form, idempotency_key)
    except OutboxError as exc:
        field = getattr(exc, "field", None)
        blocked = refused_upload(form, exc)
        return page(request, "compose.html", session, code=422, form=form,
                    error=f"{exc.message}" + (f" (field {field})" if field else "")
                    + (f": {exc.hint}" if exc.hint else ""), uploads=carried(form),
                    refused=[*kept, *([blocked] if blocked else [])],
                    idempotency_key=idempotency_key, limits=limits_of(outbox))
    notice = ("This form was already sent as this message: nothing new was queued."
              if submitted.replayed else "Queued: Outbox sends it in the background.")
    return notices.redirect(f"/ui/messages/{submitted.message.id}", notice, session)
