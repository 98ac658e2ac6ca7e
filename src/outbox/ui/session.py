"""Who is signed in: an HMAC-signed session cookie (HttpOnly, SameSite=Lax, Secure over
TLS) carrying a session id and the session's CSRF token; roles; CSRF checks.

The cookie holds no secret and no password: the session id, the CSRF token and when it
was issued. The session is looked up in the database on every UI request (one read, never
on an API request), so signing out, a new password or disabling the user ends it at once
on every node. The key is `outbox.users.session_key()`, shared by every node.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from outbox.service import Outbox
from outbox.service.users import UiUser

COOKIE = "outbox_session"
LOGIN_COOKIE = "outbox_login"  # the sign-in form's CSRF token (double submit)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
RANK = {"viewer": 0, "sender": 1, "admin": 2}


class UiRefusal(Exception):
    """A page the user may not have: rendered as an error page with this status."""

    def __init__(self, status: int, title: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.hint = hint


class SignInNeeded(Exception):
    """No valid session: the browser is sent to the sign-in page."""


@dataclass(frozen=True, slots=True)
class Session:
    user: UiUser
    csrf: str
    id: str = ""  # the session's id in the store (users.start_session)

    def can(self, role: str) -> bool:
        return RANK.get(self.user.role, -1) >= RANK[role]

    @property
    def owner(self) -> str:
        """The owner of what this user submits and uploads (idempotency keys, uploads)."""
        return f"ui:{self.user.name}"

    def sign(self, value: str) -> str:
        """`value`'s signature for this session: a value a page carries to the next
        request (a notice, what a confirmation counted) is believed only with it."""
        return hmac.new(self.csrf.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]

    def is_signed(self, value: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(value), signature)


def service(request: Request) -> Outbox:
    outbox: Outbox = request.app.state.outbox
    return outbox


def is_secure(request: Request) -> bool:
    public = request.app.state.outbox.settings.ui.public_url
    return bool(public.startswith("https://") if public else request.url.scheme == "https")


def _sign(key: bytes, payload: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, payload, hashlib.sha256).digest()).decode()


async def issue(request: Request, response: Response, user: UiUser) -> None:
    outbox = service(request)
    body = json.dumps({"s": await outbox.users.start_session(user),
                       "c": secrets.token_urlsafe(24), "t": int(time.time())}).encode()
    payload = base64.urlsafe_b64encode(body).decode()
    value = f"{payload}.{_sign(await outbox.users.session_key(), payload.encode())}"
    response.set_cookie(COOKIE, value, max_age=int(outbox.settings.ui.session_max_age
                                                   .total_seconds()),
                        path="/ui", httponly=True, samesite="lax", secure=is_secure(request))


async def end(request: Request, response: Response, session: Session) -> None:
    """Sign out: the session ends in the store (a copy of the cookie no longer works
    anywhere) and the browser forgets the cookie."""
    await service(request).users.end_session(session.id)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="lax")


async def _decoded(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(COOKIE, "")
    payload, _, signature = raw.partition(".")
    if not payload or not signature:
        return None
    outbox = service(request)
    expected = _sign(await outbox.users.session_key(), payload.encode())
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except ValueError:
        return None
    age = time.time() - float(data.get("t", 0))
    if not 0 <= age <= outbox.settings.ui.session_max_age.total_seconds():
        return None
    return data if isinstance(data, dict) else None


async def current(request: Request) -> Session | None:
    data = await _decoded(request)
    if data is None:
        return None
    id = str(data.get("s", ""))
    user = await service(request).users.session_user(id)
    return Session(user, str(data.get("c", "")), id) if user is not None else None


async def _given_token(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded",
                                                           "multipart/form-data")):
        return str((await request.form()).get(CSRF_FIELD, ""))
    return ""


def refuse_forgery() -> UiRefusal:
    return UiRefusal(403, "Request refused (CSRF)", "This form did not come from an Outbox "
                     "page of your session, so nothing was done.",
                     "reload the page and submit the form again")


def need(role: str) -> Any:
    """A dependency: the session, if its user has at least `role`; a POST must carry the
    session's CSRF token (form field or X-CSRF-Token header)."""

    async def dependency(request: Request) -> Session:
        session = await current(request)
        if session is None:
            raise SignInNeeded()
        if request.method not in ("GET", "HEAD"):
            given = await _given_token(request)
            if not given or not hmac.compare_digest(given, session.csrf):
                raise refuse_forgery()
        if not session.can(role):
            raise UiRefusal(403, "Not allowed", f"Your role ({session.user.role}) may not do "
                            f"this: it needs {role} or above.",
                            "ask an administrator for a role that allows it")
        return session

    return Depends(dependency)


async def _service(request: Request) -> Outbox:
    # async: FastAPI runs a plain def dependency on its thread pool, one hop per request.
    return service(request)


Service = Annotated[Outbox, Depends(_service)]
Viewer = Annotated[Session, need("viewer")]
Sender = Annotated[Session, need("sender")]
Admin = Annotated[Session, need("admin")]
