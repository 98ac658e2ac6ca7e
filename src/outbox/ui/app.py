"""`create_ui(outbox)`: the web UI's application, mounted at /ui by `outbox serve`."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from outbox.errors import (
    AuthError,
    CommitUncertain,
    Conflict,
    DatabaseUnavailable,
    InputError,
    NotFound,
    OutboxError,
    RateLimited,
)
from outbox.observability import NO_TELEMETRY
from outbox.service import Outbox
from outbox.ui import (
    admin,
    auth,
    bulk,
    compose,
    contacts,
    dashboard,
    groups,
    keys,
    messages,
    relays,
)
from outbox.ui.render import HERE, error_page
from outbox.ui.session import COOKIE, SignInNeeded, UiRefusal, current

STATUS: tuple[tuple[type[OutboxError], int], ...] = (
    (InputError, 422), (NotFound, 404), (Conflict, 409), (RateLimited, 429), (AuthError, 403))


def create_ui(outbox: Outbox) -> FastAPI:
    app = FastAPI(title="Outbox UI", docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry=NO_TELEMETRY)
    app.state.outbox = outbox
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (auth, dashboard, bulk, messages, compose, relays, keys, admin,
                   contacts, groups):
        app.include_router(module.router)
    app.add_exception_handler(SignInNeeded, _sign_in_needed)  # type: ignore[arg-type]
    app.add_exception_handler(UiRefusal, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(OutboxError, _outbox_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _bad_request)  # type: ignore[arg-type]
    return app


async def _http_error(request: Request, exc: HTTPException) -> HTMLResponse:
    title = "Page not found" if exc.status_code == 404 else "Not done"
    message = ("There is no such page in Outbox." if exc.status_code == 404
               else str(exc.detail))
    return error_page(request, exc.status_code, title, message, "",
                      await current(request))


async def _bad_request(request: Request, exc: RequestValidationError) -> HTMLResponse:
    fields = ", ".join(".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
                       for e in exc.errors()[:3])
    return error_page(request, 422, "Not done", f"The form is not complete or not valid "
                      f"({fields}).", "go back, correct it and submit it again",
                      await current(request))


async def _sign_in_needed(request: Request, _: SignInNeeded) -> Response:
    """To the sign-in page, and from there back to the page the user was on; it says the
    session expired unless this is a first visit (nothing shows a session was had)."""
    expired = "expired=1&" if _had_a_session(request) else ""
    target = f"/ui/login?{expired}next={quote(_return_to(request))}"
    if request.headers.get("hx-request"):
        # htmx would swap the sign-in page into the fragment: have the browser go there.
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _return_to(request: Request) -> str:
    """The page to show after the sign-in: never the URL of an htmx fragment (a bare
    fragment) or of a POST (answered "Method Not Allowed" to the GET that follows)."""
    if request.headers.get("hx-request"):
        return _our_path(request, request.headers.get("hx-current-url", "")) or "/ui/"
    if not _is_navigation(request):
        return _our_path(request, request.headers.get("referer", "")) or "/ui/"
    return f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path


def _is_navigation(request: Request) -> bool:
    """A page the browser opens itself: not htmx, a script's fetch or a form's POST."""
    return (request.method in ("GET", "HEAD") and not request.headers.get("hx-request")
            and request.headers.get("sec-fetch-dest", "document") == "document")


def _our_path(request: Request, url: str) -> str | None:
    """The path and query of `url` if it is a page of this UI, else None. The host is
    dropped, and the sign-in page still accepts only a path of this UI (auth._safe_next)."""
    parts = urlsplit(url)
    public = urlsplit(request.app.state.outbox.settings.ui.public_url).netloc
    ours = {request.url.netloc, public} - {""}
    if parts.netloc not in ours or not parts.path.startswith("/ui/"):
        return None
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _had_a_session(request: Request) -> bool:
    """A session cookie that no longer signs in, or a request only a page of a session
    makes: htmx, a form's POST, a link followed from a page of the UI. The cookie alone
    is not enough: the browser drops it when its max-age (the session's) runs out."""
    if COOKIE in request.cookies or not _is_navigation(request):
        return True
    came_from = _our_path(request, request.headers.get("referer", ""))
    return came_from is not None and not came_from.startswith("/ui/login")


async def _refused(request: Request, exc: UiRefusal) -> HTMLResponse:
    return error_page(request, exc.status, exc.title, exc.message, exc.hint,
                      await current(request))


async def _outbox_error(request: Request, exc: OutboxError) -> HTMLResponse:
    if isinstance(exc, DatabaseUnavailable):
        return _database_unavailable(request, exc)
    status = next((code for kind, code in STATUS if isinstance(exc, kind)), 500)
    response = error_page(request, status, "Not done", exc.message, exc.hint,
                          await current(request))
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _database_unavailable(request: Request, exc: DatabaseUnavailable) -> HTMLResponse:
    """503 in plain words (never the driver's), rendered without looking the session up:
    that needs the database too, and failing again there turned the page into a bare
    500 and a traceback."""
    if isinstance(exc, CommitUncertain):
        message = ("Outbox lost its database while saving this: it may or may not have "
                   "been done.")
        hint = "open the message list to see whether it was, before doing it again"
    elif request.method in ("GET", "HEAD"):  # a page to show, not an action: after a
        # cancel stored, its redirect here must not read as the cancel undone
        message = "Outbox cannot reach its database right now: this page cannot be shown."
        hint = ("reload in a few seconds; if it lasts, whoever runs Outbox sees why in "
                "`outbox doctor`")
    else:
        message = "Outbox cannot reach its database right now: nothing was done."
        hint = ("try again in a few seconds; if it lasts, whoever runs Outbox sees why in "
                "`outbox doctor`")
    response = error_page(request, 503, "Database unavailable", message, hint, None)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response
