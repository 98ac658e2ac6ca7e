"""Bulk actions on everything matching the messages list's filter: "Retry / Release /
Cancel all matching" opens a confirmation page naming how many messages match; only
the confirmation (a POST with the session's CSRF token) acts, through the service."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from outbox.service.bulk import BulkResult, apply_to_matching, check_action, count_matching
from outbox.ui import notices
from outbox.ui.messages import filter_of
from outbox.ui.render import page
from outbox.ui.session import Sender, Service

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
    chosen, where = filter_of(filters)
    check_action(action, chosen)
    count = await count_matching(outbox.messages, chosen, where)
    shown = {k: v for k, v in filters.items() if v}
    return page(request, "bulk_confirm.html", session, action=action, verb=VERBS[action],
                count=count, filters=shown, done=DONE[action],
                back=f"/ui/messages?{urlencode(shown)}")


@router.post("/messages/matching")
async def act_on_matching(session: Sender, outbox: Service, action: Annotated[str, Form()],
                          status: Annotated[str, Form()] = "",
                          recipient: Annotated[str, Form(max_length=320)] = "",
                          relay: Annotated[str, Form(max_length=100)] = "",
                          since: Annotated[str, Form(max_length=40)] = "",
                          until: Annotated[str, Form(max_length=40)] = "",
                          q: Annotated[str, Form(max_length=998)] = "",
                          expected: Annotated[int, Form(ge=0)] = 0) -> Response:
    filters = {"status": status, "recipient": recipient, "relay": relay, "since": since,
               "until": until, "q": q}
    chosen, where = filter_of(filters)
    result = await apply_to_matching(outbox.messages, action, chosen, where)
    return notices.redirect("/ui/messages", notice_of(result, expected), session, **filters)


def notice_of(result: BulkResult, expected: int) -> str:
    notice = (f"{result.done} of {result.matched} matching message(s) "
              f"{DONE[result.action]}.")
    if result.matched != expected:
        notice += (f" The confirmation counted {expected}: the queue changed meanwhile, "
                   "so what matched at the time of the action was acted on.")
    if result.refused:
        notice += " Not done: " + "; ".join(f"{id}: {why}" for id, why in result.refused[:5])
        if len(result.refused) > 5:
            notice += f" (and {len(result.refused) - 5} more)"
    return notice
