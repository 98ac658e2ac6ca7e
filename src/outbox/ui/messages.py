"""Messages: the list (filters by status, recipient, relay, dates and subject; keyset
pages; bulk retry / cancel of the selected; of everything matching: ui/bulk.py), a
message's detail (recipients with the guidance, the timeline, each attempt's redacted
transcript, the raw MIME as an .eml download without Bcc) and its actions: retry,
cancel, resend. Resending a message that already reached someone asks for a confirmation
first; the confirmation form carries an idempotency key, so a double click resends once.
Retrying a message a try of which ended uncertain (the relay probably has it) asks too."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from outbox.core.addresses import parse_mailbox
from outbox.core.model import MessageStatus
from outbox.errors import ConfirmationRequired, IdempotencyInProgress, InputError, OutboxError
from outbox.service import MessageFilter
from outbox.service.bulk import count_matching
from outbox.service.relays import RelayStatus
from outbox.service.transfer import raw_message
from outbox.ui import notices
from outbox.ui.render import page
from outbox.ui.session import Sender, Service, Session, Viewer
from outbox.ui.transcripts import split_transcript
from outbox.views.render import attempt_view, detail_view, message_view

router = APIRouter()
PAGE_SIZE = 50
REPLAY_WAIT = 10.0  # seconds a second click waits for the first one's resend


@router.get("/messages", response_class=HTMLResponse)
async def list_messages(request: Request, session: Viewer, outbox: Service,
                        status: Annotated[str, Query()] = "",
                        recipient: Annotated[str, Query(max_length=320)] = "",
                        relay: Annotated[str, Query(max_length=100)] = "",
                        since: Annotated[str, Query(max_length=40)] = "",
                        until: Annotated[str, Query(max_length=40)] = "",
                        q: Annotated[str, Query(max_length=998)] = "",
                        cursor: Annotated[str | None, Query()] = None,
                        notice: Annotated[str, Query()] = "") -> HTMLResponse:
    filters = dict(zip(FILTERS, (status, recipient, relay, since, until, q), strict=True))
    chosen, where = filter_of(filters)
    found = await outbox.messages.list(chosen, PAGE_SIZE, cursor or None, where)
    filters["status"] = chosen.value if chosen else ""
    return page(request, "messages.html", session, filters=filters, notice=notice,
                statuses=[s.value for s in MessageStatus],
                relays=[r.name for r in outbox.settings.relays],
                query=urlencode({k: v for k, v in filters.items() if v}),
                messages=[message_view(m) for m in found.messages],
                next_cursor=found.next_cursor,
                matching=await count_matching(outbox.messages, chosen, where, exact=False))


FILTERS = ("status", "recipient", "relay", "since", "until", "q")  # the list's, in order


def filter_of(filters: dict[str, str]) -> tuple[MessageStatus | None, MessageFilter]:
    """The list's query fields (status, recipient, relay, since, until, q) as the
    service's status and filter; a bad date is an `InputError` naming the field."""
    status = filters.get("status", "")
    chosen = MessageStatus(status) if status in MessageStatus._value2member_map_ else None
    return chosen, MessageFilter(
        recipient=filters.get("recipient", "").strip() or None,
        relay=filters.get("relay") or None, since=_day(filters.get("since", ""), "since"),
        until=_day(filters.get("until", ""), "until"),
        subject=filters.get("q", "").strip() or None)


def _day(value: str, field: str) -> datetime | None:
    """A date (YYYY-MM-DD, a day in UTC) or an ISO time; `InputError` naming the field."""
    if not value.strip():
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{field}: '{value}' is not a date like 2026-12-31",
                         field=field) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@router.get("/messages/{id}", response_class=HTMLResponse)
async def show_message(request: Request, id: str, session: Viewer, outbox: Service,
                       notice: Annotated[str, Query()] = "") -> HTMLResponse:
    return await _detail(request, id, session, outbox, notice=notice)


async def _detail(request: Request, id: str, session: Session, outbox: Service, *,
                  notice: str = "", confirm: str = "", confirm_retry: str = "",
                  status: int = 200) -> HTMLResponse:
    detail = await outbox.messages.get(id)
    attempts = [(attempt_view(a), split_transcript(a.transcript))
                for a in await outbox.messages.attempts(id)]
    return page(request, "message.html", session, code=status, m=detail_view(detail),
                senders=senders_of(detail.message.content.from_,
                                   await outbox.bounces.return_path(detail.message)),
                attempts=attempts, notice=notice,
                confirm=confirm, confirm_retry=confirm_retry,
                resend_key=secrets.token_urlsafe(16))


def senders_of(header: str, envelope: str) -> tuple[str, str | None]:
    """The From header as the message has it (display name included), and the envelope
    sender it leaves with (a VERP return path with [bounces] domain) when that is another
    address: the page showed the envelope's as "From" (found by a stranger pass)."""
    try:
        address = parse_mailbox(header, "from").addr_spec
    except InputError:  # stored before today's checks: compared as it is
        address = header
    return header, None if address.lower() == envelope.lower() else envelope


@router.get("/messages/{id}/eml")
async def download_eml(id: str, session: Viewer, outbox: Service) -> StreamingResponse:
    """The raw MIME source as an attachment; Bcc is never a header of it."""
    _, chunks = await raw_message(outbox, id)
    return StreamingResponse(chunks, media_type="message/rfc822", headers={
        "Content-Disposition": f'attachment; filename="{id}.eml"',
        "X-Content-Type-Options": "nosniff"})


def _back(id: str, notice: str, session: Session) -> Response:
    return notices.redirect(f"/ui/messages/{id}", notice, session)


@router.post("/messages/{id}/retry", response_class=HTMLResponse)
async def retry(request: Request, id: str, session: Sender, outbox: Service,
                confirm: Annotated[str, Form()] = "") -> Response:
    try:
        message = await outbox.messages.retry(id, confirm=confirm == "yes")
    except ConfirmationRequired as exc:  # a try ended uncertain: the relay has a copy
        return await _detail(request, id, session, outbox, confirm_retry=exc.message,
                             status=409)
    held_back = await outbox.relays.held_back_or_unknown(message)
    if held_back is None:  # the database went after the retry was stored: it is done
        # Answered here: the message's page, where a redirect would go, needs the database.
        return page(request, "done.html", session, title="Queued for another try",
                    notice=RETRIED_UNCHECKED, back=f"/ui/messages/{id}")
    return _back(id, retried(held_back), session)


RETRIED_UNCHECKED = ("Queued for another try. Whether a relay's back-off holds it back "
                     "could not be checked: Outbox cannot reach its database just now; "
                     "open Relays in a minute to see.")


def retried(held_back: list[RelayStatus]) -> str:
    """What a retry does: "now" was untrue while a relay backs off (found by a stranger
    pass: 'Queued for another try now.', then deferred again at once)."""
    if not held_back:
        return "Queued for another try now."
    relay = held_back[0]
    assert relay.backoff_until is not None
    why = relay.delivery_detail.partition(" after ")[2]  # "3 failure(s): <reason>"
    return (f"Queued for another try when relay {relay.name} ends its back-off, at "
            f"{relay.backoff_until:%H:%M:%S} UTC" + (f", after {why}" if why else "") + ".")


@router.post("/messages/{id}/cancel")
async def cancel(id: str, session: Sender, outbox: Service) -> Response:
    await outbox.messages.cancel(id)
    return _back(id, "Cancelled: it will not be sent.", session)


@router.post("/messages/{id}/resend", response_class=HTMLResponse)
async def resend(request: Request, id: str, session: Sender, outbox: Service,
                 confirm: Annotated[str, Form()] = "",
                 resend_key: Annotated[str, Form()] = "") -> Response:
    try:
        copy = await _resend(outbox, id, confirm == "yes", session.owner, resend_key)
    except ConfirmationRequired as exc:
        return await _detail(request, id, session, outbox, confirm=exc.message, status=409)
    return _back(copy, f"Resent as a new message (a copy of {id}).", session)


async def _resend(outbox: Service, id: str, confirm: bool, owner: str, key: str) -> str:
    """The copy's id; the form's key makes a second click give back the same copy."""
    deadline = asyncio.get_running_loop().time() + REPLAY_WAIT
    while True:
        try:
            done = await outbox.messages.resend(id, confirm=confirm, owner=owner,
                                                idempotency_key=key or None)
            return done.message.id
        except IdempotencyInProgress:  # the first click's resend is still under way
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


@router.post("/messages/bulk", response_class=HTMLResponse)
async def bulk(request: Request, session: Sender, outbox: Service,
               action: Annotated[str, Form()],
               id: Annotated[list[str] | None, Form()] = None) -> Response:
    """Back to the list as it was filtered (the form carries the filters as f_<name>),
    which a stranger pass found reset; with nothing ticked, saying so ("0 of 0")."""
    form = await request.form()
    kept = {name: str(form.get(f"f_{name}", ""))[:998] for name in FILTERS}
    ids = id or []
    if not ids:
        return notices.redirect("/ui/messages", "Nothing selected: tick the messages first.",
                                session, **kept)
    verb = outbox.messages.retry if action == "retry" else outbox.messages.cancel
    done, refused = 0, []
    for one in ids:
        try:
            await verb(one)
            done += 1
        except OutboxError as exc:
            refused.append(f"{one}: {exc.message}")
    what = "queued for another try" if action == "retry" else "cancelled"
    notice = f"{done} of {len(ids)} selected message(s) {what}."
    if refused:
        notice += " Not done: " + "; ".join(refused[:5])
    return notices.redirect("/ui/messages", notice, session, **kept)
