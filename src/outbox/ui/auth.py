"""Sign in and out. The sign-in form carries its own CSRF token (a double-submit cookie,
since there is no session yet); failures are throttled by the service."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from outbox.errors import AuthError, RateLimited
from outbox.ui import session as sessions
from outbox.ui.render import page
from outbox.ui.session import LOGIN_COOKIE, Service, Viewer

router = APIRouter()


def _safe_next(target: str) -> str:
    """Only a path of this UI: never another site (open redirect)."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


def _login_page(request: Request, next: str, error: str = "", status: int = 200,
                name: str = "", expired: bool = False) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = page(request, "login.html", None, code=status, login_csrf=token,
                    next=_safe_next(next), error=error, name=name, expired=expired)
    response.set_cookie(LOGIN_COOKIE, token, path="/ui", httponly=True, samesite="lax",
                        secure=sessions.is_secure(request))
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/ui/", expired: str = "") -> Response:
    """`expired`: sent here by a page of a session that ended (app._sign_in_needed)."""
    if await sessions.current(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, next, expired=expired == "1")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, outbox: Service, name: Annotated[str, Form()],
                password: Annotated[str, Form()], csrf_token: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "/ui/") -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        raise sessions.refuse_forgery()
    client = request.client.host if request.client else "unknown"
    try:
        user = await outbox.users.sign_in(name, password, client)
    except RateLimited as exc:
        response = _login_page(request, next, f"{exc.message}: {exc.hint}", 429, name)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except AuthError as exc:
        return _login_page(request, next, exc.message, 401, name)
    redirect = RedirectResponse(_safe_next(next), status_code=303)
    await sessions.issue(request, redirect, user)
    redirect.delete_cookie(LOGIN_COOKIE, path="/ui")
    return redirect


@router.post("/logout")
async def logout(request: Request, session: Viewer) -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    await sessions.end(request, response, session)
    return response
