"""Bulk actions on everything matching the messages list's filter: "Retry / Release /
Cancel all matching" opens a confirmation page naming how many messages match; only
the confirmation (a POST with the session's CSRF token) acts, through the service, and
only on what it counted: it carries the count and the newest message counted, signed
with the session, so mail accepted after it is left alone, and a count that grew up to
that message (an older one changed into the filter) is shown again to confirm."""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from outbox.service.bulk import (
    BulkResult,
    Counted,
    apply_to_matching,
    check_action,
    count_for_confirmation,
)
from outbox.ui import notices
from outbox.ui.messages import filter_of
from outbox.ui.render import page
from outbox.ui.session import Sender, Service, Session, UiRefusal

router = APIRouter()
FIELDS = ("status", "recipient", "relay", "since", "until", "q")
VERBS = {"retry": "Retry", "release": "Release", "cancel": "Cancel"}
DONE = {"retry": "queued for another try", "release": "released",
        "cancel": "cancelled"}


@router.get("/messages/matching", response_class=HTMLResponse)
async def confirm_matching(request: Request, session: Sender, outbox: Service,
                           action: Annotated[str, Query()],
                           status: Annotated[str, Query()] = "",
                           recipient: Annotated[str, Query(max_length=320)] = "",
                           relay: Annotated[str, Query(max_length=100)] = "",
                           since: Annotated[str, Query(max_length=40)] = "",
                           until: Annotated[str, Query(max_length=40)] = "",
                           q: Annotated[str, Query(max_length=998)] = "") -> HTMLResponse:
    filters = {"status": status, "recipient": recipient, "relay": relay, "since": since,
               "until": until, "q": q}
    return await _confirmation(request, session, outbox, action, filters)


async def _confirmation(request: Request, session: Session, outbox: Service, action: str,
                        filters: dict[str, str], changed: BulkResult | None = None,
                        counted_before: int = 0) -> HTMLResponse:
    chosen, where = filter_of(filters)
    check_action(action, chosen)
    counted = await count_for_confirmation(outbox.messages, chosen, where)
    shown = {k: v for k, v in filters.items() if v}
    return page(request, "bulk_confirm.html", session, code=409 if changed else 200,
                action=action, verb=VERBS[action], count=counted.count, filters=shown,
                done=DONE[action], back=f"/ui/messages?{urlencode(shown)}",
                confirmed=counted.token,
                signature=session.sign(_signed(action, filters, counted.token)),
                changed=changed, counted_before=counted_before)


@router.post("/messages/matching")
async def act_on_matching(request: Request, session: Sender, outbox: Service,
                          action: Annotated[str, Form()],
                          status: Annotated[str, Form()] = "",
                          recipient: Annotated[str, Form(max_length=320)] = "",
                          relay: Annotated[str, Form(max_length=100)] = "",
                          since: Annotated[str, Form(max_length=40)] = "",
                          until: Annotated[str, Form(max_length=40)] = "",
                          q: Annotated[str, Form(max_length=998)] = "",
                          confirmed: Annotated[str, Form(max_length=400)] = "",
                          signature: Annotated[str, Form(max_length=64)] = "") -> Response:
    filters = {"status": status, "recipient": recipient, "relay": relay, "since": since,
               "until": until, "q": q}
    if not session.is_signed(_signed(action, filters, confirmed), signature):
        raise UiRefusal(400, "Not done", "This confirmation was not made for this filter in "
                        "your session, so nothing was done.",
                        f"open {VERBS.get(action, 'the action')} all matching again from "
                        "the messages list")
    counted = Counted.parse(confirmed)
    chosen, where = filter_of(filters)
    result = await apply_to_matching(outbox.messages, action, chosen, where, counted)
    if not result.acted:
        return await _confirmation(request, session, outbox, action, filters, result,
                                   counted.count)
    return notices.redirect("/ui/messages", notice_of(result, counted.count), session,
                            **filters)


def _signed(action: str, filters: dict[str, str], confirmed: str) -> str:
    """What the signature covers: the action, the filter and what was counted."""
    return json.dumps(["bulk", action, *(filters[k] for k in FIELDS), confirmed])


def notice_of(result: BulkResult, expected: int) -> str:
    notice = (f"{result.done} of {result.matched} matching message(s) "
              f"{DONE[result.action]}.")
    if result.matched < expected:
        notice += (f" The confirmation counted {expected}: {expected - result.matched} no "
                   "longer matched.")
    if result.newer:
        notice += (f" {result.newer} matching message(s) accepted after the confirmation "
                   "were left alone.")
    if result.refused:
        notice += " Not done: " + "; ".join(f"{id}: {why}" for id, why in result.refused[:5])
        if len(result.refused) > 5:
            notice += f" (and {len(result.refused) - 5} more)"
    return notice
