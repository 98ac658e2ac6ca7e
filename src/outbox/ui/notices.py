"""The green notice a page shows after an action, carried in the redirect's query.

Signed with the session's CSRF token (`Session.sign`, HMAC-SHA256): a page shows a
`notice` only with its `ns` signature. Unsigned, anyone could send a signed-in user a
link whose success box said anything on Outbox's own page ("Relay credentials were
reset: re-enter the password at https://evil.example/", found by a stranger pass);
escaped, but believed.
A notice made on a page (not from the query) needs no signature.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse

from outbox.ui.session import Session


def redirect(path: str, notice: str, session: Session, **query: str) -> RedirectResponse:
    """303 to `path` (with `query`), showing `notice` there."""
    signed = urlencode({**{k: v for k, v in query.items() if v}, "notice": notice,
                        "ns": session.sign(notice)})
    return RedirectResponse(f"{path}?{signed}", status_code=303)


def shown(request: Request, session: Session | None, notice: str) -> str:
    """`notice` if the page may show it: made here, or carried with its signature."""
    if not notice or notice != request.query_params.get("notice"):
        return notice
    given = request.query_params.get("ns", "")
    if session is not None and session.is_signed(notice, given):
        return notice
    return ""
